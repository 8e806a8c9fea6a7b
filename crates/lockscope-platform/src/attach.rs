//! Containers that another runtime runs (Podman, Docker), found by name:
//! what lockscope records of them is their cgroup, matched in the kernel,
//! so every process the container has or starts (`exec` included) is seen.

use std::path::PathBuf;
use std::process::Command;

use crate::PlatformError;

/// The runtimes asked, in this order, when none is named.
pub const RUNTIMES: [&str; 2] = ["podman", "docker"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningContainer {
    pub runtime: String,
    /// The name (or id) it was asked for by.
    pub name: String,
    /// Its cgroup on the host (v2, else v1's pids hierarchy).
    pub cgroup: PathBuf,
}

/// `[RUNTIME:]CONTAINER` as the runtime that runs it knows it.
pub fn find_container(text: &str) -> Result<RunningContainer, PlatformError> {
    let (runtimes, name) = match text.split_once(':') {
        Some((runtime, name)) => (vec![runtime], name),
        None => (RUNTIMES.to_vec(), text),
    };
    let mut why = vec![];
    for runtime in runtimes {
        match inspect(runtime, name) {
            Ok(container) => return Ok(container),
            Err(e) => why.push(e),
        }
    }
    Err(PlatformError::Runtime(format!("container {name:?}: {}", why.join("; "))))
}

fn inspect(runtime: &str, name: &str) -> Result<RunningContainer, String> {
    let out = Command::new(runtime)
        .args(["inspect", "--type", "container", "--format", "{{.State.Pid}}", name])
        .output()
        .map_err(|e| format!("{runtime}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{runtime} inspect: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let pid: u32 = text.trim().parse().map_err(|_| format!("{runtime} inspect printed {text:?}"))?;
    if pid == 0 {
        return Err(format!("{runtime}: {name} is not running (start it, then record)"));
    }
    let cgroup = lockscope_proc::procfs::cgroup_of(pid).map_err(|e| format!("{runtime}: {name}'s process {pid}: {e}"))?;
    Ok(RunningContainer { runtime: runtime.to_owned(), name: name.to_owned(), cgroup })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_no_runtime_knows_says_what_each_answered() {
        let err = find_container("no-runtime-here:web").unwrap_err().to_string();
        assert!(err.starts_with("container \"web\": no-runtime-here: "), "{err}");
    }
}
