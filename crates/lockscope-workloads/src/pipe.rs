//! Pipe contention: several threads write one pipe while one thread drains it.
//! Every write takes the pipe's own mutex, so a workload contends only with
//! itself: its pipe locks are private to it. Writers are spread over the
//! CPUs the process may use: on a kernel without preemption, writers sharing
//! one CPU never meet inside the mutex, and the pipe would show no contention.

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::meter::{Meter, Sample};
use crate::{Budget, WorkloadError};

pub struct PipeContention {
    pub writers: u32,
    /// Bytes per write.
    pub chunk: usize,
}

impl PipeContention {
    /// One operation is one write. `Budget::Rounds(n)` means n writes per writer.
    pub fn run(&self, budget: Budget) -> Result<Sample, WorkloadError> {
        if self.writers == 0 || self.chunk == 0 {
            return Err(WorkloadError::InvalidArgument("--writers and --chunk must be at least 1".into()));
        }
        let mut fds = [0; 2];
        // SAFETY: fds is a valid two-element array.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(WorkloadError::Io { what: "creating a pipe".into(), source: std::io::Error::last_os_error() });
        }
        // SAFETY: both fds were just created and are owned here.
        let (mut reader, writer) = unsafe { (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1])) };
        let writer = Arc::new(writer);
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let cpus = allowed_cpus();
        let start = Instant::now();

        let handles: Vec<_> = (0..self.writers as usize)
            .map(|i| {
                let (writer, stop, ops) = (Arc::clone(&writer), Arc::clone(&stop), Arc::clone(&ops));
                let data = vec![0x42u8; self.chunk];
                let cpu = cpus.get(i % cpus.len().max(1)).copied();
                std::thread::spawn(move || {
                    // Best effort: unpinned writers still write, only less in parallel.
                    if let Some(cpu) = cpu {
                        let _ = lockscope_proc::launch::pin(0, &[cpu]);
                    }
                    let mut done = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if let Budget::Rounds(n) = budget {
                            if done >= n {
                                break;
                            }
                        }
                        if (&*writer).write_all(&data).is_err() {
                            break;
                        }
                        done += 1;
                        ops.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let drain = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
        });
        if let Budget::Time(d) = budget {
            std::thread::sleep(d);
            stop.store(true, Ordering::Relaxed);
        }
        for h in handles {
            let _ = h.join();
        }
        drop(writer); // last write end closes: the reader sees EOF
        let _ = drain.join();
        // Writers share one pipe: only the total is meaningful, not intervals.
        let mut meter = Meter::new("pipe", "write to the shared pipe", None);
        meter.add(ops.load(Ordering::Relaxed), start.elapsed());
        Ok(meter.finish())
    }
}

/// The CPUs this process may run on (empty if they cannot be read).
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, filled by the kernel.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_writer_writes_its_share() {
        let t = PipeContention { writers: 2, chunk: 64 }.run(Budget::Rounds(1000)).unwrap();
        assert_eq!(t.ops, 2000);
    }

    #[test]
    fn the_cpu_running_the_test_is_an_allowed_one() {
        let cpu = unsafe { libc::sched_getcpu() };
        assert!(allowed_cpus().contains(&(cpu as usize)));
    }
}
