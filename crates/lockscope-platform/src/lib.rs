//! lockscope's platform runtime. Isolation platforms (paper Table 1): where a
//! workload runs — a plain host process, a runc container, a gVisor sandbox
//! or a microVM. Each platform starts a built-in workload held before its
//! first instruction, names the host processes that stand for it (what a
//! recording session follows; this crate knows nothing of recording), and
//! cleans up whatever happens: an [`Instance`] stops and removes everything
//! it made when stopped or dropped. `guest` runs a command inside Debian's
//! own kernel under qemu (acquire mode where the host refuses it).

pub mod attach;
pub mod guest;
mod host;
mod host_system;
mod microvm;
mod oci;

use std::path::{Path, PathBuf};

pub use host::HostInstance;
/// A workload's standard output: lockscope's own, captured
/// ([`Instance::take_output`]), or discarded.
pub use lockscope_proc::launch::Output;

/// Where, in an instance's working directory, a built-in workload notes how
/// it ended (see exit_note).
const EXIT_NOTE: &str = ".lockscope-exit";

/// The platforms lockscope can run workloads on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlatformKind {
    Host,
    Runc,
    Gvisor,
    Microvm,
}

impl PlatformKind {
    pub const ALL: [PlatformKind; 4] = [PlatformKind::Host, PlatformKind::Runc, PlatformKind::Gvisor, PlatformKind::Microvm];

    pub fn name(self) -> &'static str {
        match self {
            PlatformKind::Host => "host",
            PlatformKind::Runc => "runc",
            PlatformKind::Gvisor => "gvisor",
            PlatformKind::Microvm => "microvm",
        }
    }

    pub fn parse(text: &str) -> Result<PlatformKind, PlatformError> {
        PlatformKind::ALL.into_iter().find(|k| k.name() == text).ok_or_else(|| PlatformError::Unknown(text.to_owned()))
    }

    /// Whether its instances are virtual machines under qemu: emulated in
    /// software where [`guest::kvm_usable`] is false.
    pub fn runs_in_qemu(self) -> bool {
        self == PlatformKind::Microvm
    }

    /// Whether this machine can run it, and why not.
    pub fn availability(self, env: &Env) -> Availability {
        match self {
            PlatformKind::Host => Availability { usable: true, detail: "plain processes".into() },
            PlatformKind::Runc => oci::Runtime::runc().availability(),
            PlatformKind::Gvisor => oci::Runtime::gvisor(&env.runsc_platform).availability(),
            PlatformKind::Microvm => microvm::availability(env),
        }
    }

    /// Ok when this machine can run it; else why not.
    pub fn ensure_usable(self, env: &Env) -> Result<(), PlatformError> {
        let availability = self.availability(env);
        match availability.usable {
            true => Ok(()),
            false => Err(PlatformError::Unavailable { platform: self.name(), why: availability.detail }),
        }
    }

    /// Creates an instance of the workload, held before it runs.
    pub fn create(self, spec: &InstanceSpec, env: &Env) -> Result<Box<dyn Instance>, PlatformError> {
        self.ensure_usable(env)?;
        if let Some(root) = &spec.user_root {
            if !matches!(self, PlatformKind::Runc | PlatformKind::Gvisor) {
                return Err(PlatformError::Runtime(format!("{} is for runc and gvisor, not {self}", root.flag())));
            }
        }
        Ok(match self {
            PlatformKind::Host => Box::new(HostInstance::builtin(spec, env)?),
            PlatformKind::Runc => Box::new(oci::Runtime::runc().create(spec, env)?),
            PlatformKind::Gvisor => Box::new(oci::Runtime::gvisor(&env.runsc_platform).create(spec, env)?),
            PlatformKind::Microvm => Box::new(microvm::MicroVm::create(spec, env)?),
        })
    }
}

impl std::fmt::Display for PlatformKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Availability {
    pub usable: bool,
    /// What was found (a version), or what is missing and how to get it.
    pub detail: String,
}

/// What to run and how to place it.
#[derive(Clone, Debug, Default)]
pub struct InstanceSpec {
    /// A name unique among the instances running together.
    pub name: String,
    /// Arguments to `lockscope workload` (e.g. `["file-create", "--files", "2000"]`).
    pub workload: Vec<String>,
    /// What becomes of the workload's standard output.
    pub output: Output,
    /// CPUs to run on.
    pub cpus: Option<Vec<usize>>,
    /// Memory limit in bytes (a cgroup limit; a microVM's memory size).
    pub memory_limit: Option<u64>,
    /// A root of the user's (runc, gVisor only), read-only, where the
    /// workload runs as it is, without lockscope.
    pub user_root: Option<UserRoot>,
}

/// What the user gives a container to run in, instead of the host's system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserRoot {
    /// A root file system (`--rootfs DIR`): the workload is `command --
    /// PROGRAM [ARGS]`, and PROGRAM runs in it.
    Rootfs(PathBuf),
    /// An OCI bundle (`--bundle DIR`, as `runc run --bundle` takes it): its
    /// root file system, and its process's arguments (unless a program is
    /// named after `--`), environment and working directory. Its other
    /// settings (namespaces, mounts, limits) are lockscope's, as for every
    /// container it runs.
    Bundle(PathBuf),
}

impl UserRoot {
    /// The root a `--workload` flag gives, if it is one of [`UserRoot::flag`]'s.
    fn of_flag(flag: &str, dir: PathBuf) -> Option<UserRoot> {
        [UserRoot::Rootfs(dir.clone()), UserRoot::Bundle(dir)].into_iter().find(|root| root.flag() == flag)
    }

    /// The `--workload` flag that gives it.
    pub fn flag(&self) -> &'static str {
        match self {
            UserRoot::Rootfs(_) => "--rootfs",
            UserRoot::Bundle(_) => "--bundle",
        }
    }

    pub fn dir(&self) -> &Path {
        match self {
            UserRoot::Rootfs(dir) | UserRoot::Bundle(dir) => dir,
        }
    }
}

/// What every platform needs from its surroundings.
#[derive(Clone, Debug)]
pub struct Env {
    /// The lockscope binary that runs the built-in workloads (copied into
    /// container root file systems and guests).
    pub lockscope: PathBuf,
    /// Where instances keep their bundles, root file systems and working
    /// directories (removed when they stop). On the file system under test:
    /// the file workloads work here.
    pub work_root: PathBuf,
    /// gVisor's platform (`ptrace` works everywhere; `kvm` on bare metal, as the paper ran it).
    pub runsc_platform: String,
    /// Cache of the microVM's kernel.
    pub guest_cache: PathBuf,
}

impl Env {
    /// This lockscope binary, working under `work_root`.
    pub fn new(work_root: impl Into<PathBuf>) -> Result<Self, PlatformError> {
        let lockscope = std::env::current_exe().map_err(io("finding the lockscope binary"))?;
        Ok(Env { lockscope, work_root: work_root.into(), runsc_platform: "ptrace".into(), guest_cache: crate::guest::default_cache_dir() })
    }

    /// The default working area: /var/tmp (a disk file system, as the paper's ext4).
    pub fn default_work_root() -> PathBuf {
        PathBuf::from("/var/tmp/lockscope")
    }

    /// A fresh directory for one instance, named after it.
    fn instance_dir(&self, name: &str) -> Result<PathBuf, PlatformError> {
        std::fs::create_dir_all(&self.work_root).map_err(io(format!("creating {}", self.work_root.display())))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-", sanitize(name)))
            .tempdir_in(&self.work_root)
            .map_err(io(format!("creating a directory in {}", self.work_root.display())))?;
        Ok(dir.keep())
    }
}

/// A running (or held) workload on some platform.
pub trait Instance: Send {
    fn platform(&self) -> PlatformKind;
    /// The host processes that stand for the workload now (with their
    /// descendants): what the recorder selects.
    fn pids(&self) -> Vec<u32>;
    /// How the platform names it (container id, cgroup, VMM pid), for people.
    fn describe(&self) -> String;
    /// Waits until the held workload can start at once: a microVM's boot,
    /// which its creation only begins, so that instances created one after
    /// another boot side by side. [`Instance::start`] waits too.
    fn wait_ready(&mut self) -> Result<(), PlatformError> {
        Ok(())
    }
    /// Lets the held workload run.
    fn start(&mut self) -> Result<(), PlatformError>;
    /// The workload's standard output, when captured (once).
    fn take_output(&mut self) -> Option<std::fs::File>;
    /// How it ended, once it has.
    fn try_wait(&mut self) -> Option<String>;
    /// Ends the workload and removes everything the platform made for it.
    /// Idempotent; also done on drop.
    fn stop(&mut self);
    /// Stops the running workload in place until [`Instance::resume`]. It
    /// holds no kernel lock while paused: SIGSTOP and the cgroup freezer
    /// both stop a task only on its way back to user space. By default
    /// its processes and their descendants are sent SIGSTOP (for a VMM
    /// that pauses the whole machine).
    fn pause(&mut self) -> Result<(), PlatformError> {
        signal_tree(&self.pids(), libc::SIGSTOP)
    }
    /// Lets a paused workload go on.
    fn resume(&mut self) -> Result<(), PlatformError> {
        signal_tree(&self.pids(), libc::SIGCONT)
    }
}

/// Sends `signal` to each process and every descendant of it.
fn signal_tree(pids: &[u32], signal: libc::c_int) -> Result<(), PlatformError> {
    for &pid in pids {
        for p in std::iter::once(pid).chain(lockscope_proc::procfs::descendants(pid)) {
            // SAFETY: kill has no memory-safety preconditions.
            if unsafe { libc::kill(p as libc::pid_t, signal) } != 0 && p == pid {
                return Err(PlatformError::Io { what: format!("signalling process {p}"), source: std::io::Error::last_os_error() });
            }
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("unknown platform {0:?}: use host, runc, gvisor or microvm")]
    Unknown(String),
    #[error("platform {platform} is not usable here: {why}")]
    Unavailable { platform: &'static str, why: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Runtime(String),
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PlatformError {
    let what = what.into();
    move |source| PlatformError::Io { what, source }
}

/// A name safe in paths, container ids and cgroup names.
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Removes a directory tree, ignoring what is already gone.
fn remove_tree(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("could not remove {}: {e}", dir.display());
        }
    }
}

/// The version line a program prints, if it runs.
fn version_of(program: &str, arg: &str) -> Option<String> {
    let out = std::process::Command::new(program).arg(arg).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success().then(|| text.lines().next().unwrap_or("").trim().to_owned())
}

/// Parses `PLATFORM:WORKLOAD ARGS` (e.g. `runc:file-create --files 2000`).
/// The built-in workload that runs a program to its end and notes how it
/// ended: `command -- PROGRAM [ARGS]`.
pub const PROGRAM_WORKLOAD: &str = "command";

/// A workload placed on a platform, as `--workload` gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedWorkload {
    pub platform: PlatformKind,
    /// Arguments to `lockscope workload`; a program is `command -- PROGRAM [ARGS]`.
    pub workload: Vec<String>,
    /// See [`InstanceSpec::user_root`].
    pub user_root: Option<UserRoot>,
}

impl PlacedWorkload {
    /// What follows `PLATFORM:`, as a shell would read it back.
    pub fn describe(&self) -> String {
        let root = self.user_root.iter().flat_map(|r| [r.flag().to_owned(), r.dir().display().to_string()]);
        let words: Vec<String> = root.chain(self.workload.iter().cloned()).collect();
        shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" "))
    }
}

/// `PLATFORM:WORKLOAD [ARGS]`, `PLATFORM:-- PROGRAM [ARGS]`,
/// `PLATFORM:--rootfs DIR -- PROGRAM [ARGS]` or `PLATFORM:--bundle DIR [-- PROGRAM [ARGS]]`.
pub fn parse_placed_workload(text: &str) -> Result<PlacedWorkload, PlatformError> {
    let (platform, rest) = text.split_once(':').ok_or_else(|| {
        PlatformError::Runtime(format!(
            "{text:?}: expected PLATFORM:WORKLOAD [ARGS], PLATFORM:[--rootfs DIR] -- PROGRAM [ARGS] or PLATFORM:--bundle DIR \
             [-- PROGRAM [ARGS]], e.g. runc:file-create --files 2000"
        ))
    })?;
    let platform = PlatformKind::parse(platform.trim())?;
    let mut args = shlex::split(rest).unwrap_or_default();
    let user_root = match args.as_slice() {
        [flag, dir, ..] => UserRoot::of_flag(flag, PathBuf::from(dir)),
        _ => None,
    };
    if user_root.is_some() {
        args.drain(..2);
    }
    if matches!(user_root, Some(UserRoot::Bundle(_))) && args.is_empty() {
        // The bundle's own process.
        return Ok(PlacedWorkload { platform, workload: args, user_root });
    }
    if args.is_empty() || args[..] == ["--"] {
        return Err(PlatformError::Runtime(format!("{text:?}: no workload after {platform}: (e.g. {platform}:mem --size 8k)")));
    }
    // `-- PROGRAM ARGS`: any program, as the built-in `command` workload runs it.
    if args[0] == "--" {
        args.insert(0, PROGRAM_WORKLOAD.to_owned());
    } else if let Some(root) = &user_root {
        return Err(PlatformError::Runtime(format!("{text:?}: with {}, name the program to run after --", root.flag())));
    }
    Ok(PlacedWorkload { platform, workload: args, user_root })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_workloads_parse() {
        let placed = parse_placed_workload("runc:file-create --files 20").unwrap();
        assert_eq!(placed.platform, PlatformKind::Runc);
        assert_eq!(placed.workload, ["file-create", "--files", "20"]);
        assert_eq!(placed.user_root, None);
        let placed = parse_placed_workload("gvisor:-- python3 -c 'print(1)'").unwrap();
        assert_eq!(placed.workload, ["command", "--", "python3", "-c", "print(1)"]);
        let placed = parse_placed_workload("runc:--rootfs /srv/alpine -- /bin/sh -c 'echo hi'").unwrap();
        assert_eq!(placed.user_root, Some(UserRoot::Rootfs(PathBuf::from("/srv/alpine"))));
        assert_eq!(placed.workload, ["command", "--", "/bin/sh", "-c", "echo hi"]);
        let placed = parse_placed_workload("gvisor:--bundle /srv/app").unwrap();
        assert_eq!(placed.user_root, Some(UserRoot::Bundle(PathBuf::from("/srv/app"))));
        assert!(placed.workload.is_empty(), "the bundle's own process");
        assert_eq!(placed.describe(), "--bundle /srv/app");
        let placed = parse_placed_workload("runc:--bundle /srv/app -- env").unwrap();
        assert_eq!(placed.workload, ["command", "--", "env"]);
        assert!(parse_placed_workload("runc:--bundle /srv/app mem").is_err(), "a bundle runs a program");
        assert!(parse_placed_workload("runc:--rootfs /srv/alpine mem").is_err(), "a rootfs runs a program");
        assert!(parse_placed_workload("runc:--rootfs /srv/alpine --").is_err());
        assert!(parse_placed_workload("runc: --").is_err());
        assert!(matches!(parse_placed_workload("lxc:mem"), Err(PlatformError::Unknown(_))));
        assert!(parse_placed_workload("host:").is_err());
        assert!(parse_placed_workload("mem").is_err());
        assert_eq!(sanitize("a b/c"), "a_b_c");
    }
}
