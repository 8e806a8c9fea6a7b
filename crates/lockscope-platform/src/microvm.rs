//! The microVM platform: the workload runs inside its own guest kernel
//! (Debian's 6.1, as the paper's), under Firecracker where installed and
//! qemu otherwise (KVM where it works, software emulation elsewhere; only
//! the qemu backend exists so far). On the
//! host it is the VMM process; its file workloads write the guest's ext4
//! disk, an image file on the host's file system. As in runc and gVisor, the
//! workload sees the host's /usr and /etc read-only (over virtio-9p), so
//! application workloads and the user's programs run there too.
//!
//! The guest boots before the workload is released: its init waits for a
//! line on a second serial port, which `start` sends, so the boot is not
//! part of what is recorded.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::guest::{GuestConfig, Machine};
use crate::{io, version_of, Availability, Env, Instance, InstanceSpec, PlatformError, PlatformKind};
use lockscope_proc::launch::{spawn_held_with, LaunchOptions, Launched};

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// Printed by the guest once it holds the gate open: a line sent before then
/// could be lost (opening a serial port clears what it had received).
const READY: &str = "lockscope-microvm: waiting";
/// Printed by the guest after the workload, with its exit status.
const EXITED: &str = "lockscope-microvm: exit status ";

pub fn availability(env: &Env) -> Availability {
    let Some(qemu) = crate::guest::qemu_version() else {
        return Availability { usable: false, detail: "qemu-system-x86_64 not found: apt-get install qemu-system-x86".into() };
    };
    let kernel = if crate::guest::GuestKernel::is_cached(&env.guest_cache, crate::guest::DebianKernel::V6_1) {
        "Debian 6.1 guest kernel cached"
    } else {
        "Debian 6.1 guest kernel fetched with apt on first use"
    };
    // A Firecracker backend is not written yet: say so where it is installed.
    let firecracker = match version_of("firecracker", "--version") {
        Some(v) => format!("; {v} installed but not used yet"),
        None => String::new(),
    };
    Availability { usable: true, detail: format!("{qemu} ({}; {kernel}{firecracker})", accel().1) }
}

/// qemu's accelerator (no BPF trampolines are attached inside a microVM)
/// and how to say it.
fn accel() -> (&'static str, &'static str) {
    match crate::guest::parallel_accel() {
        "kvm" => ("kvm", "KVM"),
        other => (other, "software emulation (TCG)"),
    }
}

pub struct MicroVm {
    /// Kept for its work directory (disks, console), removed on drop.
    machine: Machine,
    vmm: Launched,
    console: PathBuf,
    gate: PathBuf,
    vmm_done: Arc<AtomicBool>,
    output: Option<std::fs::File>,
    /// Booted to its start gate (see [`Instance::wait_ready`]).
    ready: bool,
    stopped: bool,
}

impl MicroVm {
    pub fn create(spec: &InstanceSpec, env: &Env) -> Result<Self, PlatformError> {
        let workload = shlex::try_join(spec.workload.iter().map(String::as_str)).map_err(|e| PlatformError::Runtime(e.to_string()))?;
        // lockscope runs once before the gate opens, so the libraries it
        // loads from the host's share are in the guest's page cache and their
        // first reads are not part of what is recorded.
        let command = format!(
            "exec 3< /dev/ttyS1; lockscope --version > /dev/null 2>&1; echo {READY} > /dev/ttyS0; \
             read go <&3 && lockscope workload {workload} > /dev/ttyS0 2>&1; echo \"{EXITED}$?\" > /dev/ttyS0"
        );
        let mut cfg = GuestConfig::new(command, env.work_root.clone());
        // (out_dir is unused: only `guest::run` copies /out back; here the console is the output.)
        cfg.cache_dir = env.guest_cache.clone();
        cfg.host_system = true;
        std::fs::create_dir_all(&env.work_root).map_err(io(format!("creating {}", env.work_root.display())))?;
        cfg.scratch = env.work_root.clone();
        cfg.accel = accel().0.into();
        cfg.cpus = spec.cpus.as_ref().map_or(1, |c| c.len().max(1) as u32);
        cfg.memory_mb = spec.memory_limit.map_or(1024, |b| (b >> 20).max(256) as u32);
        cfg.disk_mb = 2048;
        let machine = Machine::build(&cfg, &env.lockscope).map_err(|e| PlatformError::Runtime(format!("building the microVM: {e}")))?;
        let console = machine.work_dir().join("console.log");
        let gate = machine.work_dir().join("gate");
        for end in ["in", "out"] {
            let fifo = std::ffi::CString::new(format!("{}.{end}", gate.display())).expect("path without NUL");
            // SAFETY: a valid C string; mkfifo has no other preconditions.
            if unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) } != 0 {
                return Err(PlatformError::Io {
                    what: "creating the microVM's start gate".into(),
                    source: std::io::Error::last_os_error(),
                });
            }
        }
        // Made before qemu starts, so the console can be followed at once.
        std::fs::File::create(&console).map_err(io("creating the microVM's console"))?;
        let qemu = machine.qemu(&cfg);
        let mut argv: Vec<String> =
            std::iter::once(qemu.get_program()).chain(qemu.get_args()).map(|a| a.to_string_lossy().into_owned()).collect();
        argv.extend(["-serial".into(), format!("file:{}", console.display()), "-serial".into(), format!("pipe:{}", gate.display())]);
        let opts = LaunchOptions { cpus: spec.cpus.clone(), stderr: Some(machine.work_dir().join("qemu.log")), ..LaunchOptions::default() };
        let mut vmm = spawn_held_with(&argv, &opts).map_err(io("starting qemu-system-x86_64"))?;
        vmm.release().map_err(io("starting qemu-system-x86_64"))?;
        let mut vm =
            MicroVm { machine, vmm, console, gate, vmm_done: Arc::new(AtomicBool::new(false)), output: None, ready: false, stopped: false };
        // The workload writes to the guest's console, a file here: nothing to
        // inherit (its boot messages before the workload's are no lines a
        // workload reports).
        if spec.output == crate::Output::Capture {
            vm.output = Some(vm.follow_console()?);
        }
        Ok(vm)
    }

    fn wait_until_booted(&mut self) -> Result<(), PlatformError> {
        let start = Instant::now();
        loop {
            if std::fs::read_to_string(&self.console).is_ok_and(|c| c.contains(READY)) {
                return Ok(());
            }
            if let Some(exit) = self.vmm.try_wait() {
                let qemu = std::fs::read_to_string(self.machine.work_dir().join("qemu.log")).unwrap_or_default();
                return Err(PlatformError::Runtime(format!(
                    "the microVM stopped while booting ({exit}): {}\n{}",
                    qemu.trim(),
                    crate::guest::tail(&self.console)
                )));
            }
            if start.elapsed() > BOOT_TIMEOUT {
                return Err(PlatformError::Runtime(format!(
                    "the microVM did not boot within {BOOT_TIMEOUT:?}:\n{}",
                    crate::guest::tail(&self.console)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A pipe carrying the console from the workload's start on, until the VM stops.
    fn follow_console(&self) -> Result<std::fs::File, PlatformError> {
        let (reader, mut writer) = lockscope_proc::launch::pipe_files().map_err(io("creating a pipe"))?;
        let mut console = std::fs::File::open(&self.console).map_err(io("opening the microVM's console"))?;
        let done = Arc::clone(&self.vmm_done);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match console.read(&mut buf) {
                    Ok(0) if done.load(Ordering::Relaxed) => break,
                    Ok(0) => std::thread::sleep(Duration::from_millis(50)),
                    Ok(n) => {
                        if writer.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        Ok(reader)
    }
}

impl Instance for MicroVm {
    fn platform(&self) -> PlatformKind {
        PlatformKind::Microvm
    }

    fn pids(&self) -> Vec<u32> {
        vec![self.vmm.pid]
    }

    fn describe(&self) -> String {
        format!("qemu microVM (VMM pid {})", self.vmm.pid)
    }

    fn wait_ready(&mut self) -> Result<(), PlatformError> {
        if !self.ready {
            self.wait_until_booted()?;
            self.ready = true;
        }
        Ok(())
    }

    fn start(&mut self) -> Result<(), PlatformError> {
        self.wait_ready()?;
        let mut gate = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("{}.in", self.gate.display()))
            .map_err(io("opening the microVM's start gate"))?;
        gate.write_all(b"go\n").map_err(io("releasing the microVM's workload"))
    }

    fn take_output(&mut self) -> Option<std::fs::File> {
        self.output.take()
    }

    fn try_wait(&mut self) -> Option<String> {
        let vmm_exit = self.vmm.try_wait()?.to_owned();
        self.vmm_done.store(true, Ordering::Relaxed);
        let console = std::fs::read_to_string(&self.console).unwrap_or_default();
        Some(workload_exit(&console).unwrap_or_else(|| format!("the guest reported no workload status; its VMM ended with {vmm_exit}")))
    }

    fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        self.vmm.terminate(Duration::from_secs(2));
        self.vmm_done.store(true, Ordering::Relaxed);
        // The machine's work directory (disks, console) goes with it on drop.
    }
}

/// The workload's exit status as the guest printed it on its console, with
/// the line before it (the workload's error) when it failed.
fn workload_exit(console: &str) -> Option<String> {
    let lines: Vec<&str> = console.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let at = lines.iter().rposition(|l| l.starts_with(EXITED))?;
    let status = &lines[at][EXITED.len()..];
    Some(match (status, at.checked_sub(1).map(|i| lines[i])) {
        ("0", _) | (_, None) => format!("exit status {status}"),
        (_, Some(why)) => format!("exit status {status}: {}", why.chars().take(200).collect::<String>()),
    })
}

impl Drop for MicroVm {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_status_is_read_from_the_console() {
        let failed = "lockscope-microvm: waiting\r\nlockscope: error: --size must be at least 1 byte\r\nlockscope-microvm: exit status 1\r\n[ 9.1] reboot: Power down\r\n";
        assert_eq!(workload_exit(failed).as_deref(), Some("exit status 1: lockscope: error: --size must be at least 1 byte"));
        assert_eq!(workload_exit("{\"kind\":\"total\"}\nlockscope-microvm: exit status 0\n").as_deref(), Some("exit status 0"));
        assert_eq!(workload_exit("[ 1.0] Kernel panic - not syncing\n"), None);
    }
}
