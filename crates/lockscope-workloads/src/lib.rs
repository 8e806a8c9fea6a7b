//! Built-in workloads: small programs that stress one kernel subsystem and
//! report their throughput, so lock sharing can be measured on known loads;
//! application workloads on real libraries (`apps`); any command.

pub mod apps;
pub mod file_churn;
pub mod file_ops;
pub mod mem;
pub mod meter;
pub mod pipe;
pub mod trasher;

use std::time::Duration;

/// How long a workload runs: a fixed time or a fixed amount of work.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    Time(Duration),
    Rounds(u64),
}

impl Budget {
    /// Whether a workload that started at `start` and finished `rounds` is done.
    pub fn spent(&self, start: std::time::Instant, rounds: u64) -> bool {
        match *self {
            Budget::Time(d) => start.elapsed() >= d,
            Budget::Rounds(n) => rounds >= n,
        }
    }
}

/// Maps an I/O error to a WorkloadError saying what was being done.
pub(crate) fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> WorkloadError {
    let what = what.into();
    move |source| WorkloadError::Io { what, source }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{what} exited with {status}")]
    Failed { what: String, status: std::process::ExitStatus },
}
