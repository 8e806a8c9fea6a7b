//! OCI runtimes: runc (a container sharing the host kernel) and gVisor's
//! runsc (a user-space kernel, the Sentry, with a gofer serving files). Both
//! take the same bundle and the same create/start/kill/delete commands; they
//! differ in which host processes stand for the workload.
//!
//! The bundle is made on the fly: a read-only root file system holding the
//! lockscope binary, the host's /usr and /etc read-only (so application
//! workloads and the user's programs find their interpreters and
//! libraries), a tmpfs /tmp, and the instance's host working directory
//! bind-mounted at /work (so file workloads exercise the host file system,
//! as the paper's containers did). A root file system or OCI bundle of the
//! user's takes the place of the host's system ([`UserRoot`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::host_system::{self, HostSystem, LOCKSCOPE};
use crate::{io, remove_tree, version_of, Availability, Env, Instance, InstanceSpec, PlatformError, PlatformKind, UserRoot};
use lockscope_proc::procfs;

const CREATE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Runtime {
    kind: PlatformKind,
    program: &'static str,
    global_args: Vec<String>,
}

impl Runtime {
    pub fn runc() -> Self {
        Runtime { kind: PlatformKind::Runc, program: "runc", global_args: vec!["--root".into(), "/run/lockscope/runc".into()] }
    }

    pub fn gvisor(platform: &str) -> Self {
        Runtime {
            kind: PlatformKind::Gvisor,
            program: "runsc",
            global_args: vec!["--root".into(), "/run/lockscope/runsc".into(), format!("--platform={platform}"), "--network=none".into()],
        }
    }

    pub fn availability(&self) -> Availability {
        let package = if self.kind == PlatformKind::Runc { "runc" } else { "runsc" };
        match version_of(self.program, "--version") {
            // SAFETY: geteuid has no preconditions.
            Some(_) if unsafe { libc::geteuid() } != 0 => Availability { usable: false, detail: format!("{} needs root", self.program) },
            Some(v) => Availability { usable: true, detail: v },
            None => Availability { usable: false, detail: format!("{} not found: apt-get install {package}", self.program) },
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.program);
        c.args(&self.global_args).args(args);
        c
    }

    /// Runs a runtime command that must succeed.
    fn run(&self, args: &[&str]) -> Result<String, PlatformError> {
        let out = self.command(args).stdin(Stdio::null()).output().map_err(io(format!("running {}", self.program)))?;
        if !out.status.success() {
            return Err(PlatformError::Runtime(format!(
                "{} {}: {}",
                self.program,
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn create(self, spec: &InstanceSpec, env: &Env) -> Result<Container, PlatformError> {
        let dir = env.instance_dir(&spec.name)?;
        let id = dir.file_name().and_then(|n| n.to_str()).map(|n| format!("lockscope-{n}")).unwrap_or_default();
        // From here on, dropping the container removes whatever was made.
        let notes_exit = spec.user_root.is_none();
        let mut c = Container { runtime: self, id, dir, main_pid: 0, output: None, created: false, stopped: false, notes_exit };
        c.make_bundle(spec, env)?;
        c.run_create(spec.output)?;
        Ok(c)
    }
}

pub struct Container {
    runtime: Runtime,
    id: String,
    /// The bundle: config.json, rootfs/, work/ and the runtime's log.
    dir: PathBuf,
    /// runc: the container's init; runsc: the sandbox.
    main_pid: u32,
    output: Option<std::fs::File>,
    created: bool,
    stopped: bool,
    /// Whether lockscope runs in it and notes how the workload ended.
    notes_exit: bool,
}

impl Container {
    fn cgroup_path(&self) -> String {
        format!("/{}", self.id)
    }

    fn make_bundle(&self, spec: &InstanceSpec, env: &Env) -> Result<(), PlatformError> {
        let work = self.dir.join("work");
        std::fs::create_dir_all(&work).map_err(io("creating the work directory"))?;
        let mut mounts = vec![
            json!({ "destination": "/proc", "type": "proc", "source": "proc" }),
            json!({ "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] }),
            json!({ "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"] }),
            json!({ "destination": "/work", "type": "bind", "source": work, "options": ["rbind", "rw"] }),
        ];
        let process = match &spec.user_root {
            None => {
                let rootfs = self.dir.join("rootfs");
                for d in ["opt/lockscope", "proc", "dev", "tmp", "work"] {
                    std::fs::create_dir_all(rootfs.join(d)).map_err(io(format!("creating {d} in {}", rootfs.display())))?;
                }
                link_or_copy(&env.lockscope, &rootfs.join(LOCKSCOPE.trim_start_matches('/')))?;
                mounts.extend(host_system(&rootfs, &self.dir)?);
                let args = [LOCKSCOPE, "workload"].into_iter().map(String::from).chain(spec.workload.iter().cloned()).collect();
                Process::in_rootfs(rootfs, args)
            }
            Some(user) => Process::of_user(user, &spec.workload)?,
        };
        let mut resources = json!({});
        if let Some(limit) = spec.memory_limit {
            resources["memory"] = json!({ "limit": limit });
        }
        if let Some(cpus) = &spec.cpus {
            let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
            resources["cpu"] = json!({ "cpus": list.join(",") });
        }
        let config = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": { "uid": 0, "gid": 0 },
                "args": process.args,
                "env": process.env,
                "cwd": process.cwd,
                "capabilities": {
                    "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"],
                    "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"],
                    "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]
                },
                "noNewPrivileges": true
            },
            "root": { "path": process.rootfs, "readonly": true },
            "hostname": host_system::HOSTNAME,
            "mounts": mounts,
            "linux": {
                "namespaces": [{ "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }, { "type": "network" }],
                "cgroupsPath": self.cgroup_path(),
                "resources": resources,
                "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
            }
        });
        let text = serde_json::to_string_pretty(&config).map_err(|e| PlatformError::Runtime(e.to_string()))?;
        std::fs::write(self.dir.join("config.json"), text).map_err(io("writing config.json"))
    }

    /// `create`: the runtime sets the container up and leaves the workload
    /// held before exec until `start`.
    fn run_create(&mut self, output: crate::Output) -> Result<(), PlatformError> {
        let log = self.dir.join("runtime.log");
        let stderr = std::fs::File::create(&log).map_err(io("creating the runtime log"))?;
        let bundle = self.dir.display().to_string();
        let mut child = self
            .runtime
            .command(&["create", "--bundle", &bundle, &self.id])
            .stdin(Stdio::null())
            .stdout(match output {
                crate::Output::Inherit => Stdio::inherit(),
                crate::Output::Capture => Stdio::piped(),
                crate::Output::Discard => Stdio::null(),
            })
            .stderr(stderr)
            .spawn()
            .map_err(io(format!("running {} create", self.runtime.program)))?;
        // The workload inherits the pipe; it stays open after `create` exits.
        self.output = child.stdout.take().map(|s| std::fs::File::from(std::os::fd::OwnedFd::from(s)));
        self.created = true; // from here on, stop() deletes it
        let deadline = Instant::now() + CREATE_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().map_err(io("waiting for create"))? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(PlatformError::Runtime(format!("{} create did not finish in {CREATE_TIMEOUT:?}", self.runtime.program)));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !status.success() {
            let why = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(PlatformError::Runtime(format!("{} create failed: {}", self.runtime.program, why.trim())));
        }
        let state: serde_json::Value = serde_json::from_str(&self.runtime.run(&["state", &self.id])?)
            .map_err(|e| PlatformError::Runtime(format!("{} state: {e}", self.runtime.program)))?;
        self.main_pid = state["pid"].as_u64().unwrap_or(0) as u32;
        if self.main_pid == 0 {
            return Err(PlatformError::Runtime(format!("{} state gave no pid: {state}", self.runtime.program)));
        }
        Ok(())
    }
}

/// What the container runs, and in which root.
struct Process {
    rootfs: PathBuf,
    args: Vec<String>,
    env: Vec<String>,
    cwd: String,
}

impl Process {
    /// `args` in `rootfs`, from /work, lockscope on the `PATH`.
    fn in_rootfs(rootfs: PathBuf, args: Vec<String>) -> Process {
        let env =
            vec![host_system::PATH.into(), "HOME=/work".into(), format!("{}=/work/{}", lockscope_proc::exit_note::VAR, crate::EXIT_NOTE)];
        Process { rootfs, args, env, cwd: "/work".into() }
    }

    /// The user's program (`command -- PROGRAM [ARGS]`, or none for a
    /// bundle's own) in the user's root, which lockscope does not run in.
    fn of_user(root: &UserRoot, workload: &[String]) -> Result<Process, PlatformError> {
        let program = match workload {
            [command, dashes, program @ ..] if command == crate::PROGRAM_WORKLOAD && dashes == "--" && !program.is_empty() => {
                Some(program.to_vec())
            }
            [] => None,
            _ => return Err(PlatformError::Runtime(format!("in {} DIR, the workload is a program: -- PROGRAM [ARGS]", root.flag()))),
        };
        let canonical = |dir: &Path, what: &str| std::fs::canonicalize(dir).map_err(io(format!("{what} {}", dir.display())));
        match root {
            UserRoot::Rootfs(dir) => {
                let program = program.ok_or_else(|| PlatformError::Runtime("--rootfs DIR: name the program to run after --".into()))?;
                Ok(Process::in_rootfs(canonical(dir, "the root file system")?, program))
            }
            UserRoot::Bundle(dir) => {
                let bundle = canonical(dir, "the OCI bundle")?;
                let config = bundle.join("config.json");
                let text = std::fs::read_to_string(&config).map_err(io(format!("reading {}", config.display())))?;
                let spec: BundleSpec = serde_json::from_str(&text)
                    .map_err(|e| PlatformError::Runtime(format!("{}: not an OCI runtime spec: {e}", config.display())))?;
                let args = program.or(spec.process.args).filter(|a| !a.is_empty()).ok_or_else(|| {
                    PlatformError::Runtime(format!("{}: its process has no args; name the program to run after --", config.display()))
                })?;
                Ok(Process { rootfs: bundle.join(spec.root.path), args, env: spec.process.env, cwd: spec.process.cwd })
            }
        }
    }
}

/// What lockscope takes from a user's bundle's config.json.
#[derive(serde::Deserialize)]
struct BundleSpec {
    root: BundleRoot,
    #[serde(default)]
    process: BundleProcess,
}

#[derive(serde::Deserialize)]
struct BundleRoot {
    path: PathBuf,
}

/// A field the config leaves out takes its value from [`Default`].
#[derive(serde::Deserialize)]
#[serde(default)]
struct BundleProcess {
    args: Option<Vec<String>>,
    env: Vec<String>,
    cwd: String,
}

impl Default for BundleProcess {
    fn default() -> Self {
        BundleProcess { args: None, env: vec![], cwd: "/".into() }
    }
}

/// The host's programs and libraries, read-only ([`HostSystem`]): its
/// directories bound, its links made in `rootfs`; and, over the host's
/// /etc/hosts, the container's own (written in `bundle`).
fn host_system(rootfs: &Path, bundle: &Path) -> Result<Vec<serde_json::Value>, PlatformError> {
    let system = HostSystem::of_this_host();
    system.make_links(rootfs).map_err(io(format!("linking the host's directories in {}", rootfs.display())))?;
    let mut mounts = vec![];
    for dir in &system.shared {
        std::fs::create_dir_all(rootfs.join(dir.strip_prefix("/").unwrap_or(dir))).map_err(io(format!(
            "creating {} in {}",
            dir.display(),
            rootfs.display()
        )))?;
        mounts.push(json!({ "destination": dir, "type": "bind", "source": dir, "options": ["rbind", "ro", "nosuid", "nodev"] }));
    }
    let hosts = bundle.join("hosts");
    std::fs::write(&hosts, host_system::hosts_file()).map_err(io("writing the container's hosts file"))?;
    mounts.push(json!({ "destination": "/etc/hosts", "type": "bind", "source": hosts, "options": ["bind", "ro"] }));
    Ok(mounts)
}

/// Hard-links (same file system) or copies a file, creating its directory.
fn link_or_copy(from: &Path, to: &Path) -> Result<(), PlatformError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    // Links point at the file itself, not at a symlink (the loader in /lib64 is one).
    let from = &std::fs::canonicalize(from).map_err(io(format!("resolving {}", from.display())))?;
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map(|_| ()).map_err(io(format!("copying {}", from.display())))
}

impl Instance for Container {
    fn platform(&self) -> PlatformKind {
        self.runtime.kind
    }

    fn pids(&self) -> Vec<u32> {
        match self.runtime.kind {
            // The sandbox and its gofer: every runsc process serving this bundle.
            PlatformKind::Gvisor => {
                let mut pids = procfs::processes_with_arg_containing(&self.dir.display().to_string());
                if !pids.contains(&self.main_pid) {
                    pids.push(self.main_pid);
                }
                pids
            }
            // The container's init, which becomes the workload; runc's own
            // processes are not its descendants, so they are left out.
            _ => vec![self.main_pid],
        }
    }

    fn describe(&self) -> String {
        format!("{} container {} (pids {:?}, cgroup {})", self.runtime.program, self.id, self.pids(), self.cgroup_path())
    }

    fn start(&mut self) -> Result<(), PlatformError> {
        self.runtime.run(&["start", &self.id]).map(|_| ())
    }

    fn take_output(&mut self) -> Option<std::fs::File> {
        self.output.take()
    }

    fn try_wait(&mut self) -> Option<String> {
        if self.main_pid == 0 || procfs::process_alive(self.main_pid) {
            return None;
        }
        let note = lockscope_proc::exit_note::read(&self.dir.join("work").join(crate::EXIT_NOTE));
        Some(note.unwrap_or_else(|| match self.notes_exit {
            true => "exited without noting a status (killed by a signal, or crashed)".to_owned(),
            false => "exited (its status is unknown: it ran in the user's root file system, without lockscope to note it)".to_owned(),
        }))
    }

    /// The runtime's own pause (the cgroup freezer): signals sent to a
    /// sandbox's processes would reach gVisor's Sentry, not the workload.
    fn pause(&mut self) -> Result<(), PlatformError> {
        self.runtime.run(&["pause", &self.id]).map(|_| ())
    }

    fn resume(&mut self) -> Result<(), PlatformError> {
        self.runtime.run(&["resume", &self.id]).map(|_| ())
    }

    fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        if self.created {
            let _ = self.runtime.run(&["kill", &self.id, "KILL"]);
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.main_pid != 0 && procfs::process_alive(self.main_pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Err(e) = self.runtime.run(&["delete", "--force", &self.id]) {
                tracing::warn!("{e}");
            }
            // The runtime gives up on a cgroup whose last processes are
            // still exiting (EBUSY), and forgets the container all the same.
            for dir in procfs::cgroup_dirs_named(&self.id) {
                if let Err(e) = procfs::remove_cgroup(&dir, Duration::from_secs(10)) {
                    tracing::warn!("removing {}: {e}", dir.display());
                }
            }
        }
        remove_tree(&self.dir);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.stop();
    }
}
