//! `lockscope record`: record the kernel locks of one or more workloads.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use lockscope_bpf::{HookRequest, Lifetimes, LockClass, ModeRequest, RecordOptions};
use lockscope_experiments::record::{Placement, RecordPlan, Target, WorkloadSpec};

/// Record the kernel locks that workloads acquire, aggregated in the kernel,
/// into a trace directory (trace.json + Parquet tables).
///
/// Name each workload; two identical workloads side by side is the usual
/// experiment. Recording ends at --duration, when every --run/--pid workload
/// has exited, or on Ctrl-C; the trace is written and the probes detached in
/// every case. Workloads still running at the end are terminated if lockscope
/// launched them.
///
/// Examples:
///
///   lockscope record --run a='lockscope workload pipe' --run b='lockscope workload pipe' -o pipes.trace
///
///   lockscope record --workload a='runc:file-create --files 2000' --workload b='runc:file-create --files 2000' --duration 20s
///
///   lockscope record --workload a='gvisor:-- python3 app.py' --workload b='runc:image-processing' --duration 20s
///
///   lockscope record --container web=podman:web --duration 30s
#[derive(clap::Args)]
pub struct Args {
    /// acquire records every acquisition of the lock primitives (fentry/fexit;
    /// hold times, failed trylocks, lock re-initialisation); contention records
    /// only contended acquisitions (lock:contention_begin/end) with wait times
    /// and runs on locked-down kernels; auto picks acquire where the kernel
    /// allows it, else contention, and the trace notes which.
    #[arg(long, value_enum, default_value = "auto")]
    mode: ModeArg,
    /// Acquire mode: lock classes to probe (the paper records each class in
    /// its own run, for cleaner traces).
    #[arg(long = "locks", value_enum, value_delimiter = ',', default_value = "spinlock,rwlock,mutex,rwsem")]
    lock_classes: Vec<LockClassArg>,
    /// Acquire mode: do not record a kernel stack per acquisition (cheaper;
    /// no call sites; interrupt context is then read from the preempt count
    /// where kallsyms lists it, else not recognised).
    #[arg(long, conflicts_with = "stack_depth")]
    no_stacks: bool,
    /// Frames kept per kernel stack (as `perf lock contention --max-stack`):
    /// 8 still name the call site and a caller; the stack walk stops there,
    /// which pays off on deep stacks (page faults: 40% less per acquisition,
    /// see BENCHMARKS.md), and the stack store and trace shrink.
    #[arg(long = "max-stack", value_name = "FRAMES", default_value_t = lockscope_bpf::DEFAULT_STACK_DEPTH,
          value_parser = clap::value_parser!(u32).range(1..=lockscope_bpf::MAX_STACK_DEPTH as i64))]
    stack_depth: u32,
    /// Acquire mode: after a lock's first 16 acquisitions by a process,
    /// record the stack of one in N (as sampling profilers do). Counts per
    /// lock stay exact; counts per call site are shared out in proportion to
    /// the samples. The stack walk is most of an acquisition's cost (see
    /// BENCHMARKS.md), so hot locks get much cheaper. 1: every acquisition.
    #[arg(long = "stack-sample", value_name = "N", default_value_t = 1, conflicts_with = "no_stacks",
          value_parser = clap::value_parser!(u32).range(1..))]
    stack_sample: u32,
    /// Acquire mode: do not probe the unlock functions (no hold times; each
    /// release no longer costs a probe run).
    #[arg(long)]
    no_hold: bool,
    /// Do not end a lock's life when the slab object holding it is freed, nor
    /// (acquire mode) when a lock is initialised. Cheaper: no program on every
    /// slab free and lock init; but an address reused for another object's
    /// lock then passes for the lock it replaced, and two workloads freeing
    /// and allocating inodes seem to share thousands.
    #[arg(long)]
    no_lifetimes: bool,
    /// Kernel hook: auto prefers the cheapest the kernel allows. Contention
    /// mode: tp_btf (BTF-typed tracepoints), else tracepoint. Acquire mode:
    /// fentry (BPF trampolines), else kprobe. Name one to insist on it.
    #[arg(long, value_enum, default_value = "auto")]
    hook: HookArg,
    /// Launch COMMAND (split like a shell would, no shell features) and follow
    /// its whole process tree, threads and children included.
    #[arg(long = "run", value_name = "NAME=COMMAND")]
    runs: Vec<String>,
    /// Run a built-in workload (see `lockscope workload --help`) on an
    /// isolation platform: host, runc, gvisor or microvm (`lockscope doctor`
    /// lists which are usable). The platform is set up before recording
    /// starts and removed after; what is followed are the host processes that
    /// stand for the workload (runc: the container's init, not runc itself;
    /// gvisor: the sandbox and gofer; microvm: the VMM). Each instance works in
    /// its own directory under --work-dir. `PLATFORM:-- PROGRAM [ARGS]` runs a
    /// program of your own instead (containers see the host's /usr and /etc
    /// read-only); `PLATFORM:--rootfs DIR -- PROGRAM [ARGS]` runs it in your
    /// own root file system, `PLATFORM:--bundle DIR [-- PROGRAM [ARGS]]` your
    /// OCI bundle's process (runc, gvisor).
    #[arg(long = "workload", value_name = "NAME=PLATFORM:WORKLOAD [ARGS]")]
    placed: Vec<String>,
    #[command(flatten)]
    instances: crate::platform_args::PlatformArgs,
    /// Pin each workload lockscope starts (--run, --workload) to a CPU of its
    /// own, in order (round robin when there are more workloads than CPUs),
    /// as the paper did.
    #[arg(long)]
    pin: bool,
    /// Memory limit of each workload lockscope starts (e.g. 2g): a cgroup
    /// limit (host, runc, gvisor), the guest's memory (microvm).
    #[arg(long, value_parser = lockscope_workloads::mem::parse_size)]
    memory_limit: Option<u64>,
    /// Follow an existing process and its descendants.
    #[arg(long = "pid", value_name = "NAME=PID")]
    pids: Vec<String>,
    /// Follow every process in a cgroup directory (v2 matched in the kernel, v1 polled).
    #[arg(long = "cgroup", value_name = "NAME=PATH")]
    cgroups: Vec<String>,
    /// Follow a running Podman or Docker container by its name or id, through
    /// its cgroup (every process it has or starts, `exec` included). RUNTIME
    /// (podman, docker): the one that runs it; by default podman, then docker.
    #[arg(long = "container", value_name = "NAME=[RUNTIME:]CONTAINER")]
    containers: Vec<String>,
    /// Stop after this long (e.g. 30s, 5m); default: until the workloads exit or Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Trace directory to write (mode 0700, files 0600: it holds kernel addresses).
    #[arg(short, long, default_value = "lockscope.trace")]
    output: PathBuf,
    /// What the experiment calls the workload (e.g. mem-8k): the row name in
    /// `lockscope compare`.
    #[arg(long)]
    label: Option<String>,
    /// Replace the output if it exists.
    #[arg(long)]
    force: bool,
    /// Capacity of the in-kernel aggregation map; records beyond it are counted as map_full.
    #[arg(long, default_value_t = lockscope_bpf::DEFAULT_MAX_RECORDS)]
    max_records: u32,
    /// Have the kernel time lockscope's own BPF programs while recording
    /// (its BPF statistics, as `bpftool prog` shows them): the report then
    /// says how much CPU the recorder spent, per run and per recorded event.
    /// Each program run costs two clock reads more.
    #[arg(long)]
    time_programs: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LockClassArg {
    Spinlock,
    Rwlock,
    Mutex,
    Rwsem,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum HookArg {
    Auto,
    #[value(name = "tp_btf")]
    TpBtf,
    Tracepoint,
    Fentry,
    Kprobe,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    Auto,
    Acquire,
    Contention,
}

impl ModeArg {
    pub fn request(self) -> ModeRequest {
        match self {
            ModeArg::Auto => ModeRequest::Auto,
            ModeArg::Acquire => ModeRequest::Acquire,
            ModeArg::Contention => ModeRequest::Contention,
        }
    }
}

fn split_named(arg: &str, flag: &str) -> anyhow::Result<(String, String)> {
    match arg.split_once('=') {
        Some((name, value)) if !name.is_empty() && !value.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => bail!("{flag} {arg:?}: expected NAME=VALUE, e.g. {flag} web=..."),
    }
}

/// The placement of the index-th workload.
fn placement(args: &Args, index: usize) -> Placement {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    Placement { cpus: args.pin.then(|| vec![index % cpus]), memory_limit: args.memory_limit, ..Placement::default() }
}

fn workloads(args: &Args) -> anyhow::Result<Vec<WorkloadSpec>> {
    let mut specs = Vec::new();
    for arg in &args.runs {
        let (name, command) = split_named(arg, "--run")?;
        let argv = shlex::split(&command)
            .filter(|a| !a.is_empty())
            .with_context(|| format!("workload {name}: cannot parse command {command:?}"))?;
        specs.push(WorkloadSpec { name, target: Target::Command(argv), placement: placement(args, specs.len()) });
    }
    for arg in &args.placed {
        let (name, placed) = split_named(arg, "--workload")?;
        let placed = lockscope_platform::parse_placed_workload(&placed)?;
        specs.push(WorkloadSpec { name, target: Target::Placed(placed), placement: placement(args, specs.len()) });
    }
    for arg in &args.pids {
        let (name, pid) = split_named(arg, "--pid")?;
        let pid = pid.parse().with_context(|| format!("--pid {arg:?}: {pid:?} is not a process id"))?;
        specs.push(WorkloadSpec { name, target: Target::Pid(pid), placement: Placement::default() });
    }
    for arg in &args.cgroups {
        let (name, path) = split_named(arg, "--cgroup")?;
        specs.push(WorkloadSpec { name, target: Target::Cgroup(path.into()), placement: Placement::default() });
    }
    for arg in &args.containers {
        let (name, container) = split_named(arg, "--container")?;
        let found = lockscope_platform::attach::find_container(&container)?;
        specs.push(WorkloadSpec { name, target: Target::Container(found), placement: Placement::default() });
    }
    Ok(specs)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let specs = workloads(&args)?;
    match (args.mode, args.hook) {
        (ModeArg::Contention, HookArg::Fentry | HookArg::Kprobe) => {
            bail!("--hook fentry and kprobe are acquire-mode hooks; contention mode uses tp_btf or tracepoint")
        }
        (ModeArg::Acquire, HookArg::TpBtf | HookArg::Tracepoint) => {
            bail!("--hook tp_btf and tracepoint are contention-mode hooks; acquire mode uses fentry or kprobe")
        }
        _ => {}
    }
    // Checked again when writing; here so a long recording is not wasted.
    if args.output.exists() && !args.force {
        bail!("{} already exists; choose another --output or pass --force to replace it", args.output.display());
    }
    let stop = crate::stop_on_signals()?;
    let options = RecordOptions {
        mode: args.mode.request(),
        hook: match args.hook {
            HookArg::Auto => HookRequest::Auto,
            HookArg::TpBtf => HookRequest::TpBtf,
            HookArg::Tracepoint => HookRequest::Tracepoint,
            HookArg::Fentry => HookRequest::Fentry,
            HookArg::Kprobe => HookRequest::Kprobe,
        },
        lock_classes: args
            .lock_classes
            .iter()
            .map(|c| match c {
                LockClassArg::Spinlock => LockClass::Spinlock,
                LockClassArg::Rwlock => LockClass::Rwlock,
                LockClassArg::Mutex => LockClass::Mutex,
                LockClassArg::Rwsem => LockClass::Rwsem,
            })
            .collect(),
        stack_depth: if args.no_stacks { 0 } else { args.stack_depth },
        hold_times: !args.no_hold,
        stack_sample: args.stack_sample,
        lifetimes: if args.no_lifetimes { Lifetimes::Dropped } else { Lifetimes::Kept },
        max_records: args.max_records,
        time_programs: args.time_programs,
    };
    let plan = RecordPlan { options, workloads: specs, duration: args.duration, stop, env: args.instances.env()? };

    let bar = crate::progress::spinner("{spinner} recording {msg}");
    let mut trace = lockscope_experiments::record::record(&plan, |p| {
        let until = match plan.duration {
            Some(d) => format!(" of {}", humantime::format_duration(d)),
            None => String::new(),
        };
        bar.set_message(format!(
            "{:.1} s{until} · {} lock events · {}/{} workloads running (Ctrl-C ends and writes the trace)",
            p.elapsed.as_secs_f64(),
            p.events,
            p.running,
            p.workloads
        ));
        bar.tick();
    })?;
    bar.finish_and_clear();
    trace.meta.label = args.label.clone();

    lockscope_trace::write_trace(&args.output, &trace, args.force)?;
    let m = &trace.meta;
    for note in &m.notes {
        eprintln!("note: {note}");
    }
    eprintln!(
        "wrote {}: {} lock records, {} stacks, {:.1} s, mode {} via {}, ended: {:?}",
        args.output.display(),
        trace.records.len(),
        trace.stacks.len(),
        m.duration_ns() as f64 / 1e9,
        m.mode,
        m.hook,
        m.end_reason
    );
    for w in &m.workloads {
        eprintln!(
            "  {}: {} processes, {:.2} s, {}",
            w.name,
            w.pids.len(),
            w.run_time_secs(),
            w.exit.as_deref().unwrap_or("still running at the end")
        );
    }
    if m.counters.lost() > 0 {
        eprintln!("warning: {} events lost; see `lockscope report` counters", m.counters.lost());
    }
    if m.counters.map_full > 0 {
        eprintln!("warning: the aggregation map filled up ({} records); record again with a larger --max-records", trace.records.len());
    }
    if m.counters.stacks_full > 0 {
        eprintln!(
            "warning: the stack store filled up ({} stacks not stored); record again with a smaller --max-stack, whose shallower stacks merge",
            m.counters.stacks_full
        );
    }
    Ok(())
}
