//! lockscope's kernel side: the BPF programs (C, in `src/bpf`), what this
//! kernel allows them to do, and the recorder that runs them over workloads.

mod abi;
mod libbpf_log;
mod loader;
pub mod privileges;
pub mod probe;
pub mod recorder;
mod sampling;

// Process launching and /proc reading live with the workloads; the recorder uses them.
pub use lockscope_workloads::{launch, procfs};
pub use privileges::Privileges;
pub use probe::{probe_hooks, Hook, HookStatus};
pub use recorder::{record, HookRequest, DEFAULT_MAX_RECORDS, DEFAULT_STACK_DEPTH, MAX_STACK_DEPTH, JoiningWorkload, Placement, LockClass, ModeRequest, Progress, RecordConfig, RecordError, WorkloadSpec};

mod contention_skel {
    include!(concat!(env!("OUT_DIR"), "/contention.skel.rs"));
}
mod acquire_skel {
    include!(concat!(env!("OUT_DIR"), "/acquire.skel.rs"));
}
mod probe_skel {
    include!(concat!(env!("OUT_DIR"), "/probe.skel.rs"));
}
