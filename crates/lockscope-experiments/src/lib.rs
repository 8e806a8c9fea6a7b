//! lockscope's experiments as a library: what the command line runs, each
//! as a configuration in and results out, with progress told through
//! callbacks (the binary draws it).
//!
//! - `record`: workloads on platforms, processes or cgroups, set up, handed
//!   to a recording session, watched until the recording ends, removed;
//! - `resolve`: a trace's stacks resolved against the kernel source and debug info;
//! - `stress`: the interference experiment (a worker, trashers joining over
//!   time, throughput sampled), and its figure (`figure`);
//! - `calibrate`: the isolation score against a ladder of known interference,
//!   on private file systems (`scratch_fs`);
//! - `study`: the paper's experiment end to end, resumable, written up as a report.

pub mod calibrate;
pub mod figure;
pub mod record;
pub mod resolve;
pub mod scratch_fs;
pub mod stress;
pub mod study;
