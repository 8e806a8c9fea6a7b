//! lockscope's kernel side: the BPF programs (C, in `src/bpf`), what this
//! kernel allows them to do, and the recorder that runs them: a session that
//! follows the processes and cgroups it is handed (it knows nothing of how
//! they were started) and aggregates their lock acquisitions in the kernel.

mod abi;
mod cpus;
mod entries;
mod libbpf_log;
mod loader;
mod primitives;
pub mod privileges;
pub mod probe;
pub mod recorder;
mod sampling;

pub use privileges::Privileges;
pub use probe::{probe_hooks, Hook, HookStatus};
pub use recorder::{
    check_privileges, record, HookRequest, Lifetimes, LockClass, ModeRequest, Progress, RecordError, RecordOptions, Session, WorkloadId,
    DEFAULT_MAX_RECORDS, DEFAULT_STACK_DEPTH, MAX_STACK_DEPTH, MAX_WORKLOADS,
};

mod contention_skel {
    include!(concat!(env!("OUT_DIR"), "/contention.skel.rs"));
}
mod acquire_skel {
    include!(concat!(env!("OUT_DIR"), "/acquire.skel.rs"));
}
mod probe_skel {
    include!(concat!(env!("OUT_DIR"), "/probe.skel.rs"));
}
