//! Trashers (paper 5.3): frequent system calls that stress one kernel
//! subsystem, run beside a worker to measure interference.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::file_churn::FileChurn;
use crate::mem::MemChurn;
use crate::meter::{Meter, Sample};
use crate::{io_error, Budget, WorkloadError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// File metadata: create, stat, rename and delete small files.
    Fs,
    /// Page allocation: map, touch and unmap memory.
    Mm,
    /// Both, alternating.
    Mixed,
    /// Computation only, at idle priority (SCHED_IDLE): no system call, so
    /// no kernel lock, and only CPU time nothing else wants, so kernel
    /// threads are not pushed onto the worker's CPU. A control.
    Cpu,
    /// Memory traffic only: each round writes 16 MiB of a 64 MiB buffer
    /// faulted in at the start (as the kernel zeroes the 16 MiB of pages of
    /// an mm round), with no system call: the mm target's pressure on caches
    /// and memory bandwidth, and its CPU time, without its kernel locks. A control.
    Memory,
}

/// Bytes an mm round maps and touches, and a memory round writes.
const MM_ROUND_BYTES: usize = 16 << 20;
/// The memory target's buffer: twice this machine's last-level cache, so
/// its rounds go to memory as fresh pages do.
const MEMORY_BUFFER_BYTES: usize = 4 * MM_ROUND_BYTES;

pub struct Trasher<'a> {
    pub target: Target,
    /// Scratch directory for the fs target (its own).
    pub dir: &'a Path,
}

impl Trasher<'_> {
    /// One operation is one round of its target's work: system calls, or
    /// the controls' arithmetic and memory writes.
    pub fn run(&self, budget: Budget, report_every: Option<Duration>) -> Result<Sample, WorkloadError> {
        let fs_round = FileChurn { dir: self.dir, files: 100, file_size: 0 };
        let mm_round = MemChurn { chunk: 1 << 20, total: MM_ROUND_BYTES as u64 };
        let mut buffer = match self.target {
            Target::Memory => vec![1u8; MEMORY_BUFFER_BYTES],
            _ => Vec::new(),
        };
        if self.target == Target::Cpu {
            lowest_priority()?;
        }
        let mut meter = Meter::new("trasher", "system-call round", report_every);
        let start = meter.started();
        let mut rounds = 0u64;
        while !budget.spent(start, rounds) {
            let t = Instant::now();
            match (self.target, rounds.is_multiple_of(2)) {
                (Target::Cpu, _) => compute(),
                (Target::Memory, _) => {
                    let quarter = (rounds as usize % 4) * MM_ROUND_BYTES;
                    buffer[quarter..quarter + MM_ROUND_BYTES].fill(rounds as u8);
                    std::hint::black_box(&buffer);
                }
                (Target::Fs, _) | (Target::Mixed, true) => {
                    fs_round.run(Budget::Rounds(1), None)?;
                    stat_and_rename(self.dir)?;
                }
                (Target::Mm, _) | (Target::Mixed, false) => mm_round.run(Budget::Rounds(1), None).map(drop)?,
            }
            meter.add(1, t.elapsed());
            rounds += 1;
        }
        Ok(meter.finish())
    }
}

/// Idle priority (SCHED_IDLE), or the lowest nice value where the scheduling
/// class is refused (gVisor's sentry refuses it: EINVAL).
fn lowest_priority() -> Result<(), WorkloadError> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler on this thread with a valid parameter.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
        return Ok(());
    }
    let idle_refused = std::io::Error::last_os_error();
    // SAFETY: setpriority on this process; no pointer is passed.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } == 0 {
        eprintln!("trasher: idle priority refused ({idle_refused}); running at nice 19");
        return Ok(());
    }
    Err(WorkloadError::Io { what: format!("moving to idle priority ({idle_refused}) or nice 19"), source: std::io::Error::last_os_error() })
}

/// About a millisecond of arithmetic that the compiler cannot drop.
fn compute() {
    let mut x = std::hint::black_box(0x9e37_79b9_7f4a_7c15u64);
    for _ in 0..1_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    std::hint::black_box(x);
}

fn stat_and_rename(dir: &Path) -> Result<(), WorkloadError> {
    let io = |what: &str| io_error(format!("{what} in {}", dir.display()));
    let (a, b) = (dir.join("t-a"), dir.join("t-b"));
    fs::write(&a, b"x").map_err(io("writing"))?;
    fs::metadata(&a).map_err(io("stat"))?;
    fs::rename(&a, &b).map_err(io("renaming"))?;
    fs::remove_file(&b).map_err(io("deleting"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_runs_and_cleans_up() {
        for target in [Target::Fs, Target::Mm, Target::Mixed, Target::Cpu, Target::Memory] {
            let tmp = tempfile::tempdir().unwrap();
            let t = Trasher { target, dir: tmp.path() }.run(Budget::Rounds(2), None).unwrap();
            assert!(t.ops > 0, "{target:?}");
            assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0, "{target:?}");
        }
    }
}
