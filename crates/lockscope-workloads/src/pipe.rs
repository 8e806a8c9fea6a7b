//! Pipe contention: several threads write one pipe while one thread drains it.
//! Every write takes the pipe's own mutex, so a workload contends only with
//! itself: its pipe locks are private to it. Given a FIFO (`fifo`), the
//! workloads given the same path write and drain one pipe: its mutex is
//! shared, and each waits while the other holds it. Writers are spread over the
//! CPUs the process may use: on a kernel without preemption, writers sharing
//! one CPU never meet inside the mutex, and the pipe would show no contention.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::meter::{Meter, Sample};
use crate::{Budget, WorkloadError};

pub struct PipeContention<'a> {
    pub writers: u32,
    /// Bytes per write.
    pub chunk: usize,
    /// A FIFO to write and drain (made if missing) instead of a pipe of its own.
    pub fifo: Option<&'a std::path::Path>,
}

impl PipeContention<'_> {
    /// One operation is one write. `Budget::Rounds(n)` means n writes per writer.
    pub fn run(&self, budget: Budget) -> Result<Sample, WorkloadError> {
        if self.writers == 0 || self.chunk == 0 {
            return Err(WorkloadError::InvalidArgument("--writers and --chunk must be at least 1".into()));
        }
        let (reader, writer) = match self.fifo {
            None => anonymous_pipe()?,
            Some(path) => fifo(path)?,
        };
        // Not blocking: with a shared FIFO no end of file comes while another
        // workload writes, so the drain stops once this workload's writers have.
        set_nonblocking(&reader)?;
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
        let writers_done = Arc::new(AtomicBool::new(false));
        let drain = {
            let done = Arc::clone(&writers_done);
            std::thread::spawn(move || drain(reader, &done))
        };
        if let Budget::Time(d) = budget {
            std::thread::sleep(d);
            stop.store(true, Ordering::Relaxed);
        }
        for h in handles {
            let _ = h.join();
        }
        writers_done.store(true, Ordering::Relaxed);
        drop(writer);
        let _ = drain.join();
        // Writers share one pipe: only the total is meaningful, not intervals.
        let mut meter = Meter::new("pipe", "write to the shared pipe", None);
        meter.add(ops.load(Ordering::Relaxed), start.elapsed());
        Ok(meter.finish())
    }
}

fn os_error(what: String) -> WorkloadError {
    WorkloadError::Io { what, source: std::io::Error::last_os_error() }
}

fn anonymous_pipe() -> Result<(File, File), WorkloadError> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid two-element array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(os_error("creating a pipe".into()));
    }
    // SAFETY: both fds were just created and are owned here.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// Both ends of the FIFO at `path`, made if missing: the read end first (not
/// blocking), so opening the write end does not wait for a reader.
fn fifo(path: &Path) -> Result<(File, File), WorkloadError> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| WorkloadError::InvalidArgument(format!("{}: a path without NUL bytes", path.display())))?;
    // SAFETY: c_path is a valid C string.
    if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::AlreadyExists {
        return Err(os_error(format!("making the FIFO {}", path.display())));
    }
    if !std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo()) {
        return Err(WorkloadError::InvalidArgument(format!("{} exists and is not a FIFO", path.display())));
    }
    let open = |write: bool| {
        let end = std::fs::OpenOptions::new().read(!write).write(write).custom_flags(libc::O_NONBLOCK).open(path);
        end.map_err(|source| WorkloadError::Io { what: format!("opening {}", path.display()), source })
    };
    let (reader, writer) = (open(false)?, open(true)?);
    // Writes block as on a pipe of its own.
    // SAFETY: F_SETFL on an fd owned here.
    unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_SETFL, 0) };
    Ok((reader, writer))
}

fn set_nonblocking(f: &File) -> Result<(), WorkloadError> {
    // SAFETY: F_SETFL on an fd owned by `f`.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
        return Err(os_error("making the pipe's read end non-blocking".into()));
    }
    Ok(())
}

/// Reads until end of file, or until nothing is left once `writers_done`.
fn drain(mut reader: File, writers_done: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if writers_done.load(Ordering::Relaxed) {
                    return;
                }
                let mut fd = libc::pollfd { fd: reader.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut fd, 1, 100) };
            }
            Err(_) => return,
        }
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
        let t = PipeContention { writers: 2, chunk: 64, fifo: None }.run(Budget::Rounds(1000)).unwrap();
        assert_eq!(t.ops, 2000);
    }

    #[test]
    fn workloads_sharing_a_fifo_each_finish_their_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared");
        let run = || PipeContention { writers: 2, chunk: 4096, fifo: Some(&path) }.run(Budget::Rounds(2000)).unwrap().ops;
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(run);
            let b = s.spawn(run);
            (a.join().unwrap(), b.join().unwrap())
        });
        assert_eq!((a, b), (4000, 4000));
        std::fs::write(dir.path().join("plain"), b"x").unwrap();
        let err = PipeContention { writers: 1, chunk: 1, fifo: Some(&dir.path().join("plain")) }.run(Budget::Rounds(1)).unwrap_err();
        assert!(err.to_string().contains("not a FIFO"), "{err}");
    }

    #[test]
    fn the_cpu_running_the_test_is_an_allowed_one() {
        let cpu = unsafe { libc::sched_getcpu() };
        assert!(allowed_cpus().contains(&(cpu as usize)));
    }
}
