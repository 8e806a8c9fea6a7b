//! The host platform: a plain process, optionally pinned to CPUs and placed
//! in a cgroup with a memory limit.

use std::path::PathBuf;
use std::time::Duration;

use crate::{io, remove_tree, Env, Instance, InstanceSpec, PlatformError, PlatformKind};
use lockscope_proc::launch::{spawn_held_with, LaunchOptions, Launched};

pub struct HostInstance {
    child: Launched,
    /// Its working directory, removed when it stops.
    dir: Option<PathBuf>,
    cgroup: Option<PathBuf>,
    stopped: bool,
    /// Where a built-in workload notes how it ended (see exit_note).
    exit_note: Option<PathBuf>,
}

impl HostInstance {
    /// A built-in workload, in a fresh working directory of its own.
    pub fn builtin(spec: &InstanceSpec, env: &Env) -> Result<Self, PlatformError> {
        let dir = env.instance_dir(&spec.name)?;
        let argv: Vec<String> = std::iter::once(env.lockscope.display().to_string())
            .chain(["workload".to_owned()])
            .chain(spec.workload.iter().cloned())
            .collect();
        let result = Self::launch(&argv, spec, Some(dir.clone()), Some(dir.join(crate::EXIT_NOTE)));
        if result.is_err() {
            remove_tree(&dir);
        }
        result
    }

    /// Any command, held; `dir` (if given) is its working directory and is removed when it stops.
    pub fn command(argv: &[String], spec: &InstanceSpec, dir: Option<PathBuf>) -> Result<Self, PlatformError> {
        Self::launch(argv, spec, dir, None)
    }

    /// `exit_note`: where a lockscope workload is asked to note how it ended.
    fn launch(argv: &[String], spec: &InstanceSpec, dir: Option<PathBuf>, exit_note: Option<PathBuf>) -> Result<Self, PlatformError> {
        let cgroup = spec.memory_limit.map(|limit| memory_cgroup(&spec.name, limit)).transpose()?;
        let opts = LaunchOptions {
            cwd: dir.clone(),
            stdout: spec.output,
            cpus: spec.cpus.clone(),
            cgroup_procs: cgroup.as_ref().map(|c| c.join("cgroup.procs")),
            stderr: None,
            env: exit_note.iter().map(|note| (lockscope_proc::exit_note::VAR.to_owned(), note.display().to_string())).collect(),
        };
        let child = match spawn_held_with(argv, &opts) {
            Ok(child) => child,
            Err(e) => {
                if let Some(c) = &cgroup {
                    let _ = std::fs::remove_dir(c);
                }
                return Err(PlatformError::Io { what: format!("starting {}", argv[0]), source: e });
            }
        };
        Ok(HostInstance { child, dir, cgroup, stopped: false, exit_note })
    }
}

/// A memory cgroup (v2 unified, else v1's memory controller) limited to `limit` bytes.
fn memory_cgroup(name: &str, limit: u64) -> Result<PathBuf, PlatformError> {
    let leaf = format!("lockscope-{}-{}", crate::sanitize(name), std::process::id());
    let (base, file) = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        ("/sys/fs/cgroup", "memory.max")
    } else {
        ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
    };
    let dir = PathBuf::from(base).join(leaf);
    std::fs::create_dir(&dir).map_err(io(format!("creating cgroup {} (is the memory controller mounted?)", dir.display())))?;
    if let Err(e) = std::fs::write(dir.join(file), limit.to_string()) {
        let _ = std::fs::remove_dir(&dir);
        return Err(PlatformError::Io { what: format!("setting {} in {}", file, dir.display()), source: e });
    }
    Ok(dir)
}

impl Instance for HostInstance {
    fn platform(&self) -> PlatformKind {
        PlatformKind::Host
    }

    fn pids(&self) -> Vec<u32> {
        vec![self.child.pid]
    }

    fn describe(&self) -> String {
        match &self.cgroup {
            Some(c) => format!("process {} in cgroup {}", self.child.pid, c.display()),
            None => format!("process {}", self.child.pid),
        }
    }

    fn start(&mut self) -> Result<(), PlatformError> {
        self.child.release().map_err(io("starting the workload"))
    }

    fn take_output(&mut self) -> Option<std::fs::File> {
        self.child.take_output()
    }

    fn try_wait(&mut self) -> Option<String> {
        let exit = self.child.try_wait()?;
        // A failed built-in workload's note also says why.
        let note = match exit {
            "exit status 0" => None,
            _ => self.exit_note.as_deref().and_then(lockscope_proc::exit_note::read),
        };
        Some(note.unwrap_or_else(|| exit.to_owned()))
    }

    fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        self.child.terminate(Duration::from_secs(2));
        if let Some(c) = &self.cgroup {
            // The cgroup empties once the killed process is reaped.
            if let Err(e) = lockscope_proc::procfs::remove_cgroup(c, Duration::from_secs(1)) {
                tracing::warn!("removing {}: {e}", c.display());
            }
        }
        if let Some(d) = &self.dir {
            remove_tree(d);
        }
    }
}

impl Drop for HostInstance {
    fn drop(&mut self) {
        self.stop();
    }
}
