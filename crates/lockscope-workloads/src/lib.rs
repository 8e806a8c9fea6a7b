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

use std::time::{Duration, Instant};

/// How long a workload runs: a fixed time or a fixed amount of work.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    Time(Duration),
    Rounds(u64),
}

impl Budget {
    /// Whether a workload that started at `start` and finished `rounds` is done.
    pub fn spent(&self, start: Instant, rounds: u64) -> bool {
        match *self {
            Budget::Time(d) => start.elapsed() >= d,
            Budget::Rounds(n) => rounds >= n,
        }
    }
}

/// Works `percent` of every [`DutyCycle::PERIOD`] and idles the rest: the
/// same load, lighter, and in proportion (a trasher at 50% meets its
/// worker in the same locks half as often).
#[derive(Debug)]
pub struct DutyCycle {
    on: Duration,
    off: Duration,
    since: Instant,
}

impl DutyCycle {
    /// Short beside a stress window (seconds), long beside one operation.
    pub const PERIOD: Duration = Duration::from_millis(100);

    /// None at 100% (always working); an error outside 1–100.
    pub fn new(percent: u32) -> Result<Option<DutyCycle>, WorkloadError> {
        match percent {
            100 => Ok(None),
            1..=99 => {
                let on = Self::PERIOD * percent / 100;
                Ok(Some(DutyCycle { on, off: Self::PERIOD - on, since: Instant::now() }))
            }
            _ => Err(WorkloadError::InvalidArgument(format!("--duty must be 1 to 100 (percent), not {percent}"))),
        }
    }

    /// Between operations: idles once this period's working time is spent.
    pub fn pace(&mut self) {
        if self.since.elapsed() >= self.on {
            std::thread::sleep(self.off);
            self.since = Instant::now();
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
