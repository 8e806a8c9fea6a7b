//! A Debian guest under qemu: runs a command inside one of Debian's own
//! kernels (6.1, the paper's, by default; fentry, kprobes and KALLSYMS_ALL) and
//! brings back what it wrote to /out. Acquire mode is proven this way on hosts
//! whose kernel refuses trampolines, and the microVM platform builds on it.
//!
//! The guest boots an initramfs of busybox, the lockscope binary with its
//! shared libraries, and the few modules needed for an ext4 disk; the command
//! runs in /mnt/disk, a fresh ext4 image. Every boot is bounded by a timeout.

pub(crate) mod initramfs;
mod kernel;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::host_system::HostSystem;
pub use kernel::{GuestDebugInfo, GuestKernel};
pub use lockscope_trace::DebianKernel;

#[derive(Clone, Debug)]
pub struct GuestConfig {
    /// A shell command line, run by the guest's `sh` in [`GuestConfig::disk_dir`].
    pub command: String,
    /// Where the guest's /out is copied back to (created).
    pub out_dir: PathBuf,
    pub timeout: Duration,
    pub memory_mb: u32,
    pub cpus: u32,
    /// Size of the ext4 image mounted at /mnt/disk.
    pub disk_mb: u32,
    /// qemu's `-accel`: `kvm`, `tcg` or `tcg,thread=single` (see [`default_accel`]).
    pub accel: String,
    /// The kernel it boots.
    pub kernel: DebianKernel,
    /// Cache for the Debian kernel packages.
    pub cache_dir: PathBuf,
    /// More host programs to put in the guest's /usr/bin (with their libraries).
    pub extra_binaries: Vec<PathBuf>,
    /// More host files to put in the guest at the same path (e.g. the font figures are drawn with).
    pub extra_files: Vec<PathBuf>,
    /// Shares the host's programs and libraries read-only over virtio-9p
    /// and runs the command in them (chrooted, by the host's `sh`, with
    /// lockscope on the `PATH` and the disk at /work, as in runc and gVisor).
    pub host_system: bool,
    /// Where the machine's work directory (initramfs, disks) is made.
    pub scratch: PathBuf,
    /// More kernel command-line arguments (e.g. lockup detectors when debugging a hang).
    pub kernel_args: Vec<String>,
    /// More qemu arguments (e.g. a monitor socket to read the CPUs' registers in a hang).
    pub qemu_args: Vec<String>,
}

impl GuestConfig {
    /// Where the command sees the guest's disk, its working directory.
    pub fn disk_dir(&self) -> &'static str {
        match self.host_system {
            true => "/work",
            false => "/mnt/disk",
        }
    }

    pub fn new(command: impl Into<String>, out_dir: impl Into<PathBuf>) -> Self {
        GuestConfig {
            command: command.into(),
            out_dir: out_dir.into(),
            timeout: Duration::from_secs(300),
            memory_mb: 2048,
            cpus: 2,
            disk_mb: 512,
            accel: default_accel().into(),
            kernel: DebianKernel::V6_1,
            cache_dir: default_cache_dir(),
            extra_binaries: vec![],
            extra_files: vec![],
            host_system: false,
            scratch: std::env::temp_dir(),
            kernel_args: vec![],
            qemu_args: vec![],
        }
    }
}

/// TCG with one host thread for all vCPUs. Multi-threaded TCG left a vCPU
/// running a stale copy of code the kernel had just live-patched (attaching
/// a BPF trampoline): both vCPUs looped on the int3 of the patch, interrupts
/// off, at `_raw_spin_unlock_irqrestore+0`, and the guest hung.
pub const SAFE_TCG: &str = "tcg,thread=single";

/// Whether qemu can run a guest under KVM here: /dev/kvm opens and the CPU
/// advertises hardware virtualization (vmx or svm). Some machines have a
/// /dev/kvm without it, under which a kernel never boots. LOCKSCOPE_KVM=1
/// forces KVM, LOCKSCOPE_KVM=0 forbids it.
pub fn kvm_usable() -> bool {
    match std::env::var("LOCKSCOPE_KVM").as_deref() {
        Ok("1") => return true,
        Ok("0") => return false,
        _ => {}
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    has_hardware_virtualization(&cpuinfo) && std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()
}

/// The `flags` of /proc/cpuinfo name vmx (Intel VT-x) or svm (AMD-V).
fn has_hardware_virtualization(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter_map(|line| line.strip_prefix("flags").and_then(|rest| rest.trim_start().strip_prefix(':')))
        .any(|flags| flags.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// The emulator every guest and microVM runs in.
const QEMU: &str = "qemu-system-x86_64";

/// qemu's version line, None where it is not installed: a guest's one
/// requirement here besides the kernel packages it fetches.
pub fn qemu_version() -> Option<String> {
    crate::version_of(QEMU, "--version")
}

/// The accelerator for a guest that attaches BPF trampolines: KVM where it
/// works, else single-threaded TCG.
pub fn default_accel() -> &'static str {
    if kvm_usable() {
        "kvm"
    } else {
        SAFE_TCG
    }
}

/// The accelerator for a guest that attaches no BPF trampolines: KVM where
/// it works, else multi-threaded TCG (a host thread per vCPU, so the vCPUs
/// run at once; [`SAFE_TCG`] only for trampolines).
pub fn parallel_accel() -> &'static str {
    if kvm_usable() {
        "kvm"
    } else {
        "tcg"
    }
}

pub fn default_cache_dir() -> PathBuf {
    lockscope_trace::cache_dir().join("guest")
}

#[derive(Debug)]
pub struct GuestOutcome {
    /// The command's exit status inside the guest.
    pub exit_code: i32,
    /// The guest's serial console.
    pub console: PathBuf,
    pub elapsed: Duration,
}

impl GuestOutcome {
    /// The console's last lines, for error messages.
    pub fn console_tail(&self) -> String {
        tail(&self.console)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Setup(String),
    #[error("the guest did not finish within {timeout:?} (killed); last console lines:\n{tail}")]
    Timeout { timeout: Duration, tail: String },
    #[error("the guest stopped without reporting the command's result; last console lines:\n{tail}")]
    NoResult { tail: String },
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> GuestError {
    let what = what.into();
    move |source| GuestError::Io { what, source }
}

/// Runs a program that must succeed, for set-up steps.
pub(crate) fn run_tool(cmd: &mut Command) -> Result<String, GuestError> {
    let out = cmd.stderr(Stdio::piped()).output().map_err(io(format!("running {cmd:?}")))?;
    if !out.status.success() {
        return Err(GuestError::Setup(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A guest ready to boot: the kernel, an initramfs that runs the command,
/// a fresh ext4 disk (the command's /mnt/disk) and a disk for /out, all in a
/// work directory removed with the machine.
pub struct Machine {
    work: tempfile::TempDir,
    kernel: GuestKernel,
    initrd: PathBuf,
    disk: PathBuf,
    out_disk: PathBuf,
    /// The host directories shared with the guest, in the order of their tags.
    shared: Vec<PathBuf>,
}

impl Machine {
    pub fn build(cfg: &GuestConfig, lockscope: &Path) -> Result<Machine, GuestError> {
        let kernel = GuestKernel::fetch(&cfg.cache_dir, cfg.kernel)?;
        let work = tempfile::Builder::new()
            .prefix("lockscope-guest")
            .tempdir_in(&cfg.scratch)
            .map_err(io(format!("creating a work directory in {}", cfg.scratch.display())))?;
        let initrd = work.path().join("initrd.img");
        let binaries: Vec<&Path> = std::iter::once(lockscope).chain(cfg.extra_binaries.iter().map(PathBuf::as_path)).collect();
        let host = cfg.host_system.then(HostSystem::of_this_host);
        initramfs::build(&kernel, &binaries, &cfg.extra_files, &cfg.command, host.as_ref(), &work.path().join("root"), &initrd)?;
        let shared = host.map(|h| h.shared).unwrap_or_default();
        let disk = work.path().join("disk.img");
        let out_disk = work.path().join("out.img");
        make_sparse(&disk, cfg.disk_mb as u64 * 1024 * 1024)?;
        run_tool(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&disk))?;
        make_sparse(&out_disk, 256 * 1024 * 1024)?;
        Ok(Machine { work, kernel, initrd, disk, out_disk, shared })
    }

    /// The machine's own scratch directory.
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// qemu for this machine; the caller adds its serial ports.
    pub fn qemu(&self, cfg: &GuestConfig) -> Command {
        let drive = |p: &Path| format!("file={},format=raw,if=virtio", p.display());
        let mut qemu = Command::new(QEMU);
        qemu.args(["-accel", &cfg.accel, "-m", &cfg.memory_mb.to_string(), "-smp", &cfg.cpus.to_string()])
            .arg("-kernel")
            .arg(&self.kernel.vmlinuz)
            .arg("-initrd")
            .arg(&self.initrd)
            .arg("-append")
            .arg(
                ["console=ttyS0 quiet panic=-1 oops=panic"]
                    .into_iter()
                    .chain(cfg.kernel_args.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(" "),
            )
            .args(["-display", "none", "-no-reboot"])
            .args(["-drive", &drive(&self.disk), "-drive", &drive(&self.out_disk)]);
        if !self.shared.is_empty() {
            // The host's programs may use any instruction the host has
            // (PyTorch's kernels: SIGILL on qemu's default CPU model).
            qemu.args(["-cpu", "max"]);
        }
        for (i, dir) in self.shared.iter().enumerate() {
            let tag = initramfs::share_tag(i);
            qemu.arg("-fsdev")
                .arg(format!("local,id={tag},path={},security_model=none,readonly=on", dir.display()))
                .arg("-device")
                .arg(format!("virtio-9p-pci,fsdev={tag},mount_tag={tag}"));
        }
        qemu.args(&cfg.qemu_args);
        qemu
    }
}

/// Boots the guest, runs the command, copies /out back.
pub fn run(cfg: &GuestConfig, lockscope: &Path) -> Result<GuestOutcome, GuestError> {
    let machine = Machine::build(cfg, lockscope)?;
    std::fs::create_dir_all(&cfg.out_dir).map_err(io(format!("creating {}", cfg.out_dir.display())))?;
    let console = cfg.out_dir.join("console.log");
    let mut qemu = machine.qemu(cfg);
    qemu.arg("-serial").arg(format!("file:{}", console.display())).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = qemu.spawn().map_err(io("starting qemu-system-x86_64 (is qemu-system-x86 installed?)"))?;
    loop {
        if child.try_wait().map_err(io("waiting for qemu"))?.is_some() {
            break;
        }
        if start.elapsed() > cfg.timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(GuestError::Timeout { timeout: cfg.timeout, tail: tail(&console) });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = start.elapsed();

    run_tool(Command::new("tar").arg("-xf").arg(&machine.out_disk).arg("-C").arg(&cfg.out_dir))
        .map_err(|_| GuestError::NoResult { tail: tail(&console) })?;
    let exit_code = std::fs::read_to_string(cfg.out_dir.join("exit-code"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| GuestError::NoResult { tail: tail(&console) })?;
    Ok(GuestOutcome { exit_code, console, elapsed })
}

fn make_sparse(path: &Path, bytes: u64) -> Result<(), GuestError> {
    let f = std::fs::File::create(path).map_err(io(format!("creating {}", path.display())))?;
    f.set_len(bytes).map_err(io(format!("sizing {}", path.display())))
}

/// The last lines of the console, for error messages.
pub(crate) fn tail(console: &Path) -> String {
    let text = std::fs::read_to_string(console).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return "(the console is empty: the kernel prints nothing before init under `quiet`)".into();
    }
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_virtualization_is_read_from_the_cpu_flags() {
        let intel = "processor\t: 0\nflags\t\t: fpu vme de pse vmx ssse3\nbugs\t\t: spectre_v1\n";
        let amd = "flags\t\t: fpu svm lm\n";
        let none = "flags\t\t: fpu vme hypervisor lm\nvmx flags\t: vnmi\n";
        assert!(has_hardware_virtualization(intel));
        assert!(has_hardware_virtualization(amd));
        assert!(!has_hardware_virtualization(none));
        assert!(!has_hardware_virtualization(""));
    }
}
