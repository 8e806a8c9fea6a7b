//! `lockscope guest`: run a command inside one of Debian's kernels under qemu.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use lockscope_platform::guest::{self, DebianKernel, GuestConfig};

/// Run a command in a Debian guest (qemu; 6.1 or 6.12) and bring back what it
/// writes to /out. Debian's kernels allow fentry, kprobes and KALLSYMS_ALL,
/// so acquire mode works there even where this host's kernel refuses it.
///
/// The guest has busybox, `lockscope` (this binary) and a fresh ext4 disk as
/// its working directory (/mnt/disk). The kernel package is fetched with apt
/// once and cached. Exits with the command's status.
///
/// Example: lockscope guest --out g -- lockscope record --mode acquire -o /out/t
///          --run a='lockscope workload pipe --duration 2s'
#[derive(clap::Args)]
pub struct Args {
    /// Where the guest's /out is copied (with console.log, stdout, exit-code;
    /// the command's stderr is on the console).
    #[arg(long, default_value = "lockscope-guest-out")]
    out: PathBuf,
    /// The kernel to boot: debian-6.1 (the paper's) or debian-6.12.
    #[arg(long, value_parser = parse_kernel, default_value = "debian-6.1")]
    kernel: DebianKernel,
    /// Kill the guest after this long (e.g. 5m); a hang is an error with the console tail.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    timeout: Duration,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 2048)]
    memory: u32,
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Size of the guest's ext4 disk in MiB.
    #[arg(long, default_value_t = 512)]
    disk: u32,
    /// qemu accelerator: kvm where the CPU has hardware virtualization and
    /// /dev/kvm opens, else tcg,thread=single (software, works everywhere;
    /// one host thread, as multi-threaded TCG can run stale code after the
    /// kernel patches itself for BPF trampolines). LOCKSCOPE_KVM=0|1 decides.
    #[arg(long)]
    accel: Option<String>,
    /// Another kernel command-line argument (e.g. `softlockup_panic=1` to get
    /// the stuck CPU's backtrace on the console); repeatable.
    #[arg(long = "kernel-arg", value_name = "ARG")]
    kernel_args: Vec<String>,
    /// Another qemu argument (e.g. `-monitor unix:/tmp/m,server,nowait` to
    /// read the CPUs' registers when the guest hangs); repeatable.
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    qemu_args: Vec<String>,
    /// Another host program to put in the guest's /usr/bin (e.g. /usr/sbin/bpftool); repeatable.
    #[arg(long = "bin", value_name = "PATH")]
    binaries: Vec<PathBuf>,
    /// Fetch the guest kernel's debug info (Debian's -dbg package, ~860 MB
    /// download for 6.1, ~1 GB for 6.12; ~650 MB kept) and print where it is; `lockscope resolve`
    /// then maps the guest's traces to source lines by itself.
    #[arg(long)]
    debug_info: bool,
    /// Share this host's /usr and /etc with the guest, read-only (virtio-9p),
    /// and run the command in them (chroot; the disk at /work, /out as
    /// itself, lockscope on the PATH): the host's own programs, Python and
    /// its packages included, then run in Debian's kernel.
    #[arg(long)]
    host_system: bool,
    /// The command, run by the guest's sh (the host's, with --host-system).
    #[arg(last = true, required_unless_present = "debug_info")]
    command: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.debug_info {
        let cache = guest::default_cache_dir();
        let kernel = guest::GuestKernel::fetch(&cache, args.kernel)?;
        eprintln!("fetching linux-image-{}-dbg (once)", kernel.release);
        let debug = guest::GuestDebugInfo::fetch(&cache, &kernel)?;
        println!("vmlinux: {}\nmodules: {}", debug.vmlinux.display(), debug.modules.display());
        if args.command.is_empty() {
            return Ok(());
        }
    }
    let mut cfg = GuestConfig::new(args.command.join(" "), &args.out);
    cfg.host_system = args.host_system;
    cfg.kernel = args.kernel;
    cfg.timeout = args.timeout;
    cfg.memory_mb = args.memory;
    cfg.cpus = args.cpus;
    cfg.disk_mb = args.disk;
    if let Some(accel) = args.accel {
        cfg.accel = accel;
    }
    cfg.extra_binaries = args.binaries;
    cfg.kernel_args = args.kernel_args;
    cfg.qemu_args = args.qemu_args;
    let me = std::env::current_exe().context("locating the lockscope binary")?;
    // The guest calls it `lockscope`, whatever the host's file is named.
    anyhow::ensure!(me.file_name().is_some_and(|n| n == "lockscope"), "{} must be named lockscope", me.display());
    eprintln!("booting Debian {} under qemu ({}), timeout {}", cfg.kernel.series(), cfg.accel, humantime::format_duration(cfg.timeout));
    let outcome = guest::run(&cfg, &me)?;
    if let Ok(text) = std::fs::read_to_string(args.out.join("stdout")) {
        print!("{text}");
    }
    eprintln!("guest finished in {:.1} s; output in {}", outcome.elapsed.as_secs_f64(), args.out.display());
    if outcome.exit_code != 0 {
        std::process::exit(outcome.exit_code);
    }
    Ok(())
}

pub(crate) fn parse_kernel(name: &str) -> Result<DebianKernel, String> {
    DebianKernel::parse(name)
        .ok_or_else(|| format!("unknown kernel; the guest boots {}", DebianKernel::ALL.map(DebianKernel::name).join(", ")))
}
