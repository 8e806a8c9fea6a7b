//! Processes as lockscope handles them, below every other crate that starts
//! or follows one: launching a process held before its first instruction
//! (`launch`), reading what /proc, cgroupfs and tracefs say about processes
//! and cgroups (`procfs`), and the note a lockscope process leaves of how it
//! ended where its parent cannot wait for it (`exit_note`).

pub mod exit_note;
pub mod launch;
pub mod procfs;
