//! What /proc, cgroupfs and tracefs tell about processes and cgroups.

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// A line of /proc/self/mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub dir: PathBuf,
    pub fs_type: String,
    /// Comma-separated, as mounted (for cgroup v1: its controllers among them).
    pub options: String,
}

impl Mount {
    fn has_option(&self, option: &str) -> bool {
        self.options.split(',').any(|o| o == option)
    }
}

/// What is mounted where, as this process sees it.
pub fn mounts() -> io::Result<Vec<Mount>> {
    Ok(parse_mounts(&std::fs::read_to_string("/proc/self/mounts")?))
}

fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, dir, fs_type, options) = (f.next()?, f.next()?, f.next()?, f.next()?);
            Some(Mount { dir: dir.into(), fs_type: fs_type.into(), options: options.into() })
        })
        .collect()
}

fn cgroup2_mount_of(path: &Path) -> io::Result<PathBuf> {
    let canonical = path.canonicalize()?;
    mounts()?
        .into_iter()
        .filter(|m| m.fs_type == "cgroup2" && canonical.starts_with(&m.dir))
        .map(|m| m.dir)
        .max_by_key(|dir| dir.as_os_str().len())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup2 mount holds this path"))
}

/// The cgroup directory a process is in: its cgroup v2 one where a cgroup2
/// hierarchy is mounted (alone, or beside v1 ones as `unified`) and the
/// process is below its root; else its v1 `pids` hierarchy's.
pub fn cgroup_of(pid: u32) -> io::Result<PathBuf> {
    let memberships = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    cgroup_dir(&memberships, &mounts()?)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("process {pid} is in no mounted cgroup but the root")))
}

fn cgroup_dir(memberships: &str, mounts: &[Mount]) -> Option<PathBuf> {
    let below = |dir: &Path, path: &str| (path != "/").then(|| dir.join(path.trim_start_matches('/')));
    // (controllers, path) of each "id:controllers:path" line; v2's has no controllers.
    let member: Vec<(&str, &str)> = memberships
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            f.next()?;
            Some((f.next()?, f.next()?))
        })
        .collect();
    let v2 = member
        .iter()
        .find(|(controllers, _)| controllers.is_empty())
        .and_then(|(_, path)| mounts.iter().find(|m| m.fs_type == "cgroup2").and_then(|m| below(&m.dir, path)));
    v2.or_else(|| {
        let (_, path) = member.iter().find(|(controllers, _)| controllers.split(',').any(|c| c == "pids"))?;
        let m = mounts.iter().find(|m| m.fs_type == "cgroup" && m.has_option("pids"))?;
        below(&m.dir, path)
    })
}

/// The cgroup directories called `name` at the root of each mounted
/// hierarchy (v1 controllers, v2), as runtimes make them for a cgroupsPath of `/name`.
pub fn cgroup_dirs_named(name: &str) -> Vec<PathBuf> {
    mounts()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.fs_type.starts_with("cgroup"))
        .map(|m| m.dir.join(name))
        .filter(|dir| dir.is_dir())
        .collect()
}

/// Removes an empty cgroup, waiting up to `wait` for its exiting processes to leave.
pub fn remove_cgroup(dir: &Path, wait: Duration) -> io::Result<()> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match std::fs::remove_dir(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if std::time::Instant::now() < deadline && e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => return other,
        }
    }
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
    fn a_process_s_cgroup_is_found_in_a_unified_hybrid_or_v1_layout() {
        let unified = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n";
        let hybrid = "cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        let v1 = "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\ncgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n";
        let container = "8:pids:/libpod_parent/libpod-ab\n4:memory:/libpod_parent/libpod-ab\n0::/libpod_parent/libpod-ab\n";
        let (unified, hybrid, v1) = (&parse_mounts(unified), &parse_mounts(hybrid), &parse_mounts(v1));
        assert_eq!(cgroup_dir(container, unified).unwrap(), Path::new("/sys/fs/cgroup/libpod_parent/libpod-ab"));
        assert_eq!(cgroup_dir(container, hybrid).unwrap(), Path::new("/sys/fs/cgroup/unified/libpod_parent/libpod-ab"));
        assert_eq!(cgroup_dir(container, v1).unwrap(), Path::new("/sys/fs/cgroup/pids/libpod_parent/libpod-ab"));
        let v1_only = "8:pids:/docker/cd\n0::/\n";
        assert_eq!(cgroup_dir(v1_only, hybrid).unwrap(), Path::new("/sys/fs/cgroup/pids/docker/cd"));
        assert_eq!(cgroup_dir("0::/\n", unified), None, "the root is no container's");
    }

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
