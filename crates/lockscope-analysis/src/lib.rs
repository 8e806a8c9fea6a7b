//! From a trace to the paper's answer (section 5.2): which locks the
//! workloads acquired in common (shared) and which only one of them did
//! (private), how often, and from where in the kernel.

pub mod analyze;
pub mod compare;
pub mod export;
#[cfg(test)]
mod fixtures;
pub mod holders;
pub mod html;
pub mod render;
pub mod score;
pub mod stats;

pub use analyze::{analyze, Analysis, CallSite, LockSummary, LockUse, Options, WorkloadSummary};
