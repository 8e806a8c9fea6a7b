//! What /proc, cgroupfs and tracefs tell about processes and cgroups.

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Whether a process exists and has not exited (a zombie has exited).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])).unwrap_or(false),
        Err(_) => false,
    }
}

fn parent_of(stat: &str) -> Option<u32> {
    // "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The processes (tgids) descending from `pid`, excluding `pid` itself.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(tgid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if let Some(ppid) = std::fs::read_to_string(entry.path().join("stat")).ok().as_deref().and_then(parent_of) {
                children.entry(ppid).or_default().push(tgid);
            }
        }
    }
    let mut found = Vec::new();
    let mut queue = VecDeque::from([pid]);
    while let Some(p) = queue.pop_front() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            found.push(c);
            queue.push_back(c);
        }
    }
    found
}

/// Processes one of whose command-line arguments contains `needle`.
pub fn processes_with_arg_containing(needle: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return vec![] };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|&b| b == 0).any(|arg| String::from_utf8_lossy(arg).contains(needle)))
                .unwrap_or(false)
        })
        .collect()
}

/// A cgroup as the BPF side matches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupTarget {
    /// cgroup v2: matched in the kernel by ancestor id at `level`.
    V2 { id: u64, level: u32 },
    /// cgroup v1: membership polled from cgroup.procs, children followed across fork.
    V1,
}

pub fn cgroup_target(path: &Path) -> io::Result<CgroupTarget> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() || !path.join("cgroup.procs").exists() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a cgroup directory"));
    }
    if fs_type(path)? != CGROUP2_SUPER_MAGIC {
        return Ok(CgroupTarget::V1);
    }
    let root = cgroup2_mount_of(path)?;
    let canonical = path.canonicalize()?;
    let level = canonical.strip_prefix(&root).map(|rel| rel.components().count()).unwrap_or(0);
    // On cgroup2 the cgroup id is the directory's inode number.
    Ok(CgroupTarget::V2 { id: meta.ino(), level: level as u32 })
}

fn fs_type(path: &Path) -> io::Result<i64> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string and buf a valid out pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut buf) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(buf.f_type as i64)
}

fn cgroup2_mount_of(path: &Path) -> io::Result<PathBuf> {
    let canonical = path.canonicalize()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, dir, ty) = (f.next()?, f.next()?, f.next()?);
            (ty == "cgroup2").then(|| PathBuf::from(dir))
        })
        .filter(|dir| canonical.starts_with(dir))
        .max_by_key(|dir| dir.as_os_str().len())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup2 mount holds this path"))
}

/// Every process in the cgroup and its descendant cgroups.
pub fn cgroup_procs(path: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    let mut dirs = vec![path.to_owned()];
    while let Some(dir) = dirs.pop() {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            dirs.extend(entries.flatten().filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false)).map(|e| e.path()));
        }
    }
    pids
}

/// Mounts tracefs at /sys/kernel/tracing when nothing is there: libbpf finds
/// classic tracepoints through it.
pub fn ensure_tracefs() -> io::Result<()> {
    let dir = Path::new("/sys/kernel/tracing");
    if dir.join("events").exists() || Path::new("/sys/kernel/debug/tracing/events").exists() {
        return Ok(());
    }
    let (src, target, ty) = (c"nodev", c"/sys/kernel/tracing", c"tracefs");
    // SAFETY: all arguments are valid C strings.
    if unsafe { libc::mount(src.as_ptr(), target.as_ptr(), ty.as_ptr(), 0, std::ptr::null()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default()
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parent_past_odd_command_names() {
        assert_eq!(parent_of("42 (a) b (c)) S 7 42 42 0"), Some(7));
    }

    #[test]
    fn finds_a_real_child_and_its_liveness() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let me = std::process::id();
        assert!(descendants(me).contains(&child.id()));
        assert!(process_alive(child.id()));
        child.kill().unwrap();
        // A killed but unreaped child is a zombie: not alive.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!process_alive(child.id()));
        child.wait().unwrap();
        assert!(!process_alive(child.id()));
    }
}
