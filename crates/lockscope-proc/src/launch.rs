//! Launching a workload so that it is tracked from its first instruction: the
//! child is forked, held until the recorder has registered its pid, then
//! released to exec. (std's Command cannot do this: spawn() waits for exec.)

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

/// A process's standard output: lockscope's own, captured in a pipe, or discarded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Inherit,
    Capture,
    Discard,
}

/// How to start a held process, besides its command line.
#[derive(Clone, Debug, Default)]
pub struct LaunchOptions {
    /// Working directory (must exist).
    pub cwd: Option<PathBuf>,
    /// Standard output: inherited, captured in a pipe ([`Launched::take_output`]) or discarded.
    pub stdout: Output,
    /// CPUs the process (and its children) may run on.
    pub cpus: Option<Vec<usize>>,
    /// A `cgroup.procs` file to move the process into before it runs.
    pub cgroup_procs: Option<PathBuf>,
    /// A file for standard error (created or truncated) instead of lockscope's own.
    pub stderr: Option<PathBuf>,
    /// Environment variables set (or replaced) for the workload; the rest is lockscope's.
    pub env: Vec<(String, String)>,
}

/// A launched workload, in its own process group. Dropping it kills the group
/// if it is still running.
pub struct Launched {
    pub pid: u32,
    release_fd: libc::c_int,
    status_fd: libc::c_int,
    output: Option<File>,
    exit: Option<String>,
}

/// Forks `argv`, held before exec until [`Launched::release`].
pub fn spawn_held(argv: &[String]) -> io::Result<Launched> {
    spawn_held_with(argv, &LaunchOptions::default())
}

/// Forks `argv` as `opts` say, held before exec until [`Launched::release`].
pub fn spawn_held_with(argv: &[String], opts: &LaunchOptions) -> io::Result<Launched> {
    let invalid = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_owned());
    let cargs: Vec<CString> =
        argv.iter().map(|a| CString::new(a.as_str())).collect::<Result<_, _>>().map_err(|_| invalid("NUL byte in command"))?;
    if cargs.is_empty() {
        return Err(invalid("empty command"));
    }
    let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());

    let cwd =
        opts.cwd.as_ref().map(|d| CString::new(d.as_os_str().as_bytes())).transpose().map_err(|_| invalid("NUL byte in directory"))?;
    // The environment, made before fork (the child may not allocate).
    let envs: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| !opts.env.iter().any(|(set, _)| k.as_bytes() == set.as_bytes()))
        .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
        .chain(opts.env.iter().map(|(k, v)| format!("{k}={v}").into_bytes()))
        .map(CString::new)
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("NUL byte in the environment"))?;
    let mut env_ptrs: Vec<*const libc::c_char> = envs.iter().map(|c| c.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    // What the child's standard output and error become (dup2'd over 1 and 2;
    // std opens files close-on-exec, so only the copies outlive exec), and the
    // read end of a captured output.
    let (stdout_to, output): (Option<OwnedFd>, Option<File>) = match opts.stdout {
        Output::Inherit => (None, None),
        Output::Capture => {
            let (r, w) = pipe_files()?;
            (Some(w.into()), Some(r))
        }
        Output::Discard => (Some(File::options().write(true).open("/dev/null")?.into()), None),
    };
    let stderr_to: Option<OwnedFd> = opts.stderr.as_ref().map(File::create).transpose()?.map(OwnedFd::from);
    let hold = pipe()?; // the parent writes one byte to release the child
    let status = pipe()?; // close-on-exec: EOF means exec succeeded, else errno
                          // SAFETY: between fork and exec the child only calls async-signal-safe
                          // functions (close, setpgid, dup2, chdir, read, execvpe, write, _exit).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = io::Error::last_os_error();
        close_all(&[hold.0, hold.1, status.0, status.1]);
        return Err(e);
    }
    if pid == 0 {
        unsafe {
            libc::close(hold.1);
            libc::close(status.0);
            libc::setpgid(0, 0);
            if let Some(fd) = &stdout_to {
                libc::dup2(fd.as_raw_fd(), 1);
            }
            if let Some(fd) = &stderr_to {
                libc::dup2(fd.as_raw_fd(), 2);
            }
            if let Some(dir) = &cwd {
                if libc::chdir(dir.as_ptr()) != 0 {
                    let errno = *libc::__errno_location();
                    libc::write(status.1, (&errno as *const i32).cast(), 4);
                    libc::_exit(127);
                }
            }
            let mut byte = 0u8;
            if libc::read(hold.0, (&mut byte as *mut u8).cast(), 1) != 1 {
                libc::_exit(127); // the recorder gave up before releasing us
            }
            libc::execvpe(ptrs[0], ptrs.as_ptr(), env_ptrs.as_ptr());
            let errno = *libc::__errno_location();
            libc::write(status.1, (&errno as *const i32).cast(), 4);
            libc::_exit(127);
        }
    }
    // Also from the parent, so a signal to the group cannot race the child's setpgid.
    unsafe { libc::setpgid(pid, pid) };
    close_all(&[hold.0, status.1]);
    drop((stdout_to, stderr_to)); // the child's now
    let launched = Launched { pid: pid as u32, release_fd: hold.1, status_fd: status.0, output, exit: None };
    // Placed while held (dropping `launched` on error ends the child), so the workload's first instruction already runs there.
    if let Some(cpus) = &opts.cpus {
        pin(pid, cpus)?;
    }
    if let Some(procs) = &opts.cgroup_procs {
        std::fs::write(procs, pid.to_string())?;
    }
    Ok(launched)
}

/// Restricts a process to `cpus`.
pub fn pin(pid: libc::pid_t, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET bounds-checks.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    if unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Launched {
    /// Lets the child exec. Fails, with the child reaped, when exec fails
    /// (e.g. `NotFound` for a command that does not exist).
    pub fn release(&mut self) -> io::Result<()> {
        let byte = 1u8;
        // SAFETY: valid fds owned by self; buffers live across the calls.
        unsafe {
            libc::write(self.release_fd, (&byte as *const u8).cast(), 1);
            let mut errno = 0i32;
            let n = libc::read(self.status_fd, (&mut errno as *mut i32).cast(), 4);
            if n == 4 {
                self.reap_blocking();
                return Err(io::Error::from_raw_os_error(errno));
            }
        }
        Ok(())
    }

    /// The read end of the captured standard output (once).
    pub fn take_output(&mut self) -> Option<File> {
        self.output.take()
    }

    /// How the workload ended, once it has.
    pub fn try_wait(&mut self) -> Option<&str> {
        if self.exit.is_none() {
            let mut status = 0;
            // SAFETY: waiting on our own child.
            if unsafe { libc::waitpid(self.pid as i32, &mut status, libc::WNOHANG) } == self.pid as i32 {
                self.exit = Some(describe_status(status));
            }
        }
        self.exit.as_deref()
    }

    /// Ends the workload's process group: SIGTERM, then SIGKILL after a grace period.
    pub fn terminate(&mut self, grace: Duration) {
        if self.try_wait().is_some() {
            return;
        }
        let group = self.pid as i32;
        // SAFETY: signalling the group we created.
        unsafe { libc::killpg(group, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if self.try_wait().is_some() {
                unsafe { libc::killpg(group, libc::SIGKILL) }; // stragglers in the group
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        unsafe { libc::killpg(group, libc::SIGKILL) };
        self.reap_blocking();
    }

    fn reap_blocking(&mut self) {
        let mut status = 0;
        // SAFETY: waiting on our own child.
        if unsafe { libc::waitpid(self.pid as i32, &mut status, 0) } == self.pid as i32 {
            self.exit = Some(describe_status(status));
        }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        close_all(&[self.release_fd, self.status_fd]);
        self.terminate(Duration::from_millis(500));
    }
}

fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status:#x}")
    }
}

/// A close-on-exec pipe as (read end, write end) files.
pub fn pipe_files() -> io::Result<(File, File)> {
    let (r, w) = pipe()?;
    // SAFETY: both ends were just created and are owned from here on.
    Ok(unsafe { (File::from_raw_fd(r), File::from_raw_fd(w)) })
}

fn pipe() -> io::Result<(libc::c_int, libc::c_int)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

fn close_all(fds: &[libc::c_int]) {
    for &fd in fds {
        // SAFETY: closing fds we own; a double close is prevented by callers.
        unsafe { libc::close(fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_until_released_then_reports_exit() {
        let mut w = spawn_held(&["sh".into(), "-c".into(), "exit 3".into()]).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(w.try_wait().is_none(), "held before release");
        w.release().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while w.try_wait().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(w.try_wait(), Some("exit status 3"));
    }

    #[test]
    fn the_workload_gets_the_variables_set_and_lockscopes_own() {
        let check = r#"test "$LOCKSCOPE_TEST_SET" = "a b" && test "$HOME" = "$1""#;
        let home = std::env::var("HOME").unwrap_or_default();
        let argv = ["sh".into(), "-c".into(), check.into(), "sh".into(), home];
        let opts = LaunchOptions { env: vec![("LOCKSCOPE_TEST_SET".into(), "a b".into())], ..LaunchOptions::default() };
        let mut w = spawn_held_with(&argv, &opts).unwrap();
        w.release().unwrap();
        w.reap_blocking();
        assert_eq!(w.try_wait(), Some("exit status 0"));
    }

    #[test]
    fn a_missing_command_fails_at_release() {
        let mut w = spawn_held(&["/nonexistent/lockscope-test".into()]).unwrap();
        let err = w.release().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn terminate_kills_the_whole_group() {
        let mut w = spawn_held(&["sh".into(), "-c".into(), "sleep 30 & sleep 30; wait".into()]).unwrap();
        w.release().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let kids = crate::procfs::descendants(w.pid);
        assert!(!kids.is_empty());
        w.terminate(Duration::from_secs(2));
        assert!(w.try_wait().is_some());
        std::thread::sleep(Duration::from_millis(100));
        assert!(kids.iter().all(|&k| !crate::procfs::process_alive(k)));
    }
}
