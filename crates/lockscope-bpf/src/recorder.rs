//! The recorder: loads the contention programs, selects the workloads'
//! processes, waits for the recording to end, and reads the in-kernel
//! aggregates into a [`Trace`].

use std::collections::{BTreeMap, BTreeSet};
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libbpf_rs::MapFlags;
use lockscope_trace::context::is_interrupt_stack;
use lockscope_trace::{
    Counters, EndReason, LockRecord, Selector, Stack, SymbolTable, Trace, TraceMeta, Workload,
};

use crate::abi::{self, NR_COUNTERS};
use crate::sampling;
use crate::loader::{self, Kernel};
use lockscope_workloads::platform::{Env, HostInstance, Instance, InstanceSpec, PlatformError, PlatformKind};
use crate::privileges::Privileges;
use crate::procfs::{self, CgroupTarget};

const MAX_WORKLOADS: usize = 63; // ids 1..=63 index the 64-entry irq_counts array
const MAX_CGROUP_TARGETS: usize = 16;
const TICK: Duration = Duration::from_millis(100);
/// Capacity of the in-kernel aggregation map unless asked otherwise.
/// Acquire mode makes many: every freed object's locks start new records, and
/// two 3 s file-churn workloads made 57,000 (~36 MB preallocated).
pub const DEFAULT_MAX_RECORDS: u32 = 262_144;
/// Frames kept per kernel stack unless asked otherwise.
pub const DEFAULT_STACK_DEPTH: u32 = 64;
/// The most a kernel stack can hold (the kernel's default perf_event_max_stack).
pub const MAX_STACK_DEPTH: u32 = 127;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeRequest {
    Auto,
    Acquire,
    Contention,
}

#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    pub name: String,
    pub selector: Selector,
    /// CPUs and memory limit for workloads lockscope starts (`Run`, `Platform`).
    pub placement: Placement,
}

/// Where a started workload runs: its CPUs and its memory limit (bytes).
#[derive(Clone, Debug, Default)]
pub struct Placement {
    pub cpus: Option<Vec<usize>>,
    pub memory_limit: Option<u64>,
    /// Its standard output (lockscope's own by default).
    pub output: lockscope_workloads::platform::Output,
}

impl Placement {
    /// The instance to start for workload `name` running `workload` (built-in workload arguments).
    fn instance(&self, name: &str, workload: Vec<String>) -> InstanceSpec {
        InstanceSpec { name: name.to_owned(), workload, cpus: self.cpus.clone(), memory_limit: self.memory_limit, output: self.output }
    }
}

/// Which hook to use: the best available, or one in particular (tp_btf and
/// tracepoint for contention mode, fentry and kprobe for acquire mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookRequest {
    Auto,
    TpBtf,
    Tracepoint,
    Fentry,
    Kprobe,
}

/// Lock classes acquire mode can trace, as the paper re-runs per class (Table 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockClass {
    Spinlock,
    Rwlock,
    Mutex,
    Rwsem,
}

impl LockClass {
    pub const ALL: [LockClass; 4] = [LockClass::Spinlock, LockClass::Rwlock, LockClass::Mutex, LockClass::Rwsem];
}

pub struct RecordConfig {
    pub mode: ModeRequest,
    pub hook: HookRequest,
    /// Acquire mode: which lock classes to probe.
    pub lock_classes: Vec<LockClass>,
    /// Frames of kernel stack recorded per acquisition (contention mode: per
    /// wait); 0 records none (acquire mode only: cheaper, no call sites).
    pub stack_depth: u32,
    /// Acquire mode: probe the unlock functions too, for hold times (each
    /// release then costs a probe run as well).
    pub hold_times: bool,
    /// Acquire mode: 1 records a stack per acquisition; N > 1, a stack for
    /// each of a lock's first `sampling::FIRST_STACKS` acquisitions by a
    /// process and then one in N, with the exact counts shared out over them
    /// (cheaper on hot locks).
    pub stack_sample: u32,
    pub workloads: Vec<WorkloadSpec>,
    pub duration: Option<Duration>,
    /// Capacity of the in-kernel aggregation map.
    pub max_records: u32,
    /// Set (e.g. by a Ctrl-C handler) to end the recording early.
    pub stop: Arc<AtomicBool>,
    /// Where platform workloads are set up (`Selector::Platform`).
    pub platform_env: Env,
    /// Workloads that join while recording (e.g. trashers added over time);
    /// with it, recording may start with none and ends only at `stop` or
    /// `duration`.
    pub joining: Option<std::sync::mpsc::Receiver<JoiningWorkload>>,
}

impl RecordConfig {
    /// A recording of `workloads` as `lockscope record` makes it without
    /// options: any mode, every lock class, full stacks and hold times, until
    /// the workloads end or `stop` is set.
    pub fn new(workloads: Vec<WorkloadSpec>, stop: Arc<AtomicBool>, platform_env: Env) -> RecordConfig {
        RecordConfig {
            mode: ModeRequest::Auto,
            hook: HookRequest::Auto,
            lock_classes: LockClass::ALL.to_vec(),
            stack_depth: DEFAULT_STACK_DEPTH,
            hold_times: true,
            stack_sample: 1,
            workloads,
            duration: None,
            max_records: DEFAULT_MAX_RECORDS,
            stop,
            platform_env,
            joining: None,
        }
    }
}

/// A workload that joins a recording under way: its processes are followed
/// (with their descendants) from the moment `tracked` is answered.
pub struct JoiningWorkload {
    pub name: String,
    pub selector: Selector,
    pub pids: Vec<u32>,
    pub tracked: std::sync::mpsc::Sender<Result<(), String>>,
}

/// Reported every tick while recording.
pub struct Progress {
    pub elapsed: Duration,
    pub events: u64,
    pub running: usize,
    pub workloads: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("recording needs privileges this process lacks: {}", Privileges::ADVICE)]
    Privileges,
    #[error("acquire mode is unavailable on this kernel: {0}; use --mode contention (or auto), see `lockscope doctor`")]
    AcquireUnavailable(String),
    #[error("no workload given: name at least one with --run, --pid or --cgroup")]
    NoWorkloads,
    #[error("at most {MAX_WORKLOADS} workloads can be recorded together")]
    TooManyWorkloads,
    #[error("at most {MAX_CGROUP_TARGETS} cgroup v2 workloads can be recorded together")]
    TooManyCgroups,
    #[error("workload name {0:?} is used twice; give each workload its own name")]
    DuplicateName(String),
    #[error("workload {name}: process {pid} does not exist")]
    NoSuchPid { name: String, pid: u32 },
    #[error("workload {name}: {path} is not a cgroup: {reason}")]
    NoSuchCgroup { name: String, path: String, reason: String },
    #[error("workload {name}: cannot parse command {command:?}")]
    BadCommand { name: String, command: String },
    #[error("workload {name}: cannot run {program:?}: {source}")]
    Launch { name: String, program: String, source: std::io::Error },
    #[error("workload {name}: {source}")]
    Platform { name: String, source: PlatformError },
    #[error("this kernel refused the lock contention tracepoints (tp_btf: {tp_btf}; tracepoint: {tracepoint}); see `lockscope doctor`")]
    Unsupported { tp_btf: String, tracepoint: String },
    #[error("attaching the recorder's programs failed: {0}")]
    Attach(String),
    #[error("BPF map access failed: {0}")]
    Map(#[from] libbpf_rs::Error),
    #[error(transparent)]
    Kallsyms(#[from] lockscope_trace::KallsymsError),
}

/// Records the workloads until the duration elapses, they all exit, or `stop`
/// is set. Probes are detached on every path out of this function.
pub fn record(cfg: &RecordConfig, mut progress: impl FnMut(&Progress)) -> Result<Trace, RecordError> {
    validate(cfg)?;
    if !Privileges::current().can_trace() {
        return Err(RecordError::Privileges);
    }
    let targets = resolve_targets(&cfg.workloads, &cfg.platform_env)?;
    let cgroups_v2: Vec<(u64, u32, u32)> = targets
        .iter()
        .filter_map(|t| match t.resolved {
            Resolved::CgroupV2 { id, level } => Some((id, level, t.id)),
            _ => None,
        })
        .collect();
    if cgroups_v2.len() > MAX_CGROUP_TARGETS {
        return Err(RecordError::TooManyCgroups);
    }

    let settings = loader::Settings {
        hook: cfg.hook,
        max_records: cfg.max_records,
        n_cgroups: cgroups_v2.len(),
        lock_classes: &cfg.lock_classes,
        stack_depth: cfg.stack_depth,
        hold_times: cfg.hold_times,
        stack_sample: cfg.stack_sample,
    };
    // The skeletons must outlive the Kernel view borrowed from them.
    let mut acquire_objects = [MaybeUninit::uninit(), MaybeUninit::uninit()];
    let mut contention_objects = [MaybeUninit::uninit(), MaybeUninit::uninit()];
    let (acquire_skel, contention_skel);
    // A hook names its mode.
    let mode = match (cfg.mode, cfg.hook) {
        (ModeRequest::Auto, HookRequest::TpBtf | HookRequest::Tracepoint) => ModeRequest::Contention,
        (ModeRequest::Auto, HookRequest::Fentry | HookRequest::Kprobe) => ModeRequest::Acquire,
        (mode, _) => mode,
    };
    let k = match mode {
        ModeRequest::Acquire => {
            let (skel, why) = loader::load_acquire(&mut acquire_objects, &settings).map_err(RecordError::AcquireUnavailable)?;
            acquire_skel = skel;
            loader::start_acquire(&acquire_skel, why, &settings).map_err(RecordError::AcquireUnavailable)?
        }
        ModeRequest::Contention => {
            contention_skel = loader::load_contention(&mut contention_objects, &settings)?;
            loader::attach_contention(&contention_skel)?
        }
        ModeRequest::Auto => {
            // Acquire where the kernel both loads and attaches it, else contention.
            let acquire = match loader::load_acquire(&mut acquire_objects, &settings) {
                Ok((skel, why)) => {
                    acquire_skel = skel;
                    loader::start_acquire(&acquire_skel, why, &settings)
                }
                Err(why) => Err(why),
            };
            match acquire {
                Ok(k) => k,
                Err(why) => {
                    contention_skel = loader::load_contention(&mut contention_objects, &settings)?;
                    let mut k = loader::attach_contention(&contention_skel)?;
                    k.notes.push(format!("mode auto: acquire mode unavailable ({why}); recorded contended acquisitions only"));
                    k
                }
            }
        }
    };
    for (i, &(id, level, workload)) in cgroups_v2.iter().enumerate() {
        let value = abi::cgroup_target(id, level, workload);
        k.maps.cgroup_targets.update(&(i as u32).to_ne_bytes(), &value, MapFlags::ANY)?;
    }

    let started_unix_ns = unix_now_ns();
    let started = Instant::now();
    let mut live = Vec::new();
    for t in targets {
        live.push(start_target(&k, t, started)?);
    }

    let end_reason = wait_for_end(cfg, &k, &mut live, started, &mut progress)?;
    let ended = Instant::now();
    // What lockscope launched stops before the probes go, so none of it is
    // inside a traced primitive while the kernel takes the trampolines down.
    for w in &mut live {
        w.finish(ended);
        if let Some(child) = &mut w.launched {
            child.stop();
        }
    }
    // Symbols before detaching: the trampolines in the stacks leave kallsyms then.
    let symbols = SymbolTable::load()?;
    let k = k.detach(); // before reading, so the picture is final
    let trace = collect(&k, &symbols, &live, started_unix_ns, ended - started, end_reason)?;
    Ok(trace)
}

fn validate(cfg: &RecordConfig) -> Result<(), RecordError> {
    if cfg.workloads.is_empty() && cfg.joining.is_none() {
        return Err(RecordError::NoWorkloads);
    }
    if cfg.workloads.len() > MAX_WORKLOADS {
        return Err(RecordError::TooManyWorkloads);
    }
    let mut names = BTreeSet::new();
    for w in &cfg.workloads {
        if !names.insert(&w.name) {
            return Err(RecordError::DuplicateName(w.name.clone()));
        }
    }
    Ok(())
}

enum Resolved {
    /// Launched by lockscope (a command, or a built-in workload on a
    /// platform), held until the probes are attached; with what it runs.
    Held(Box<dyn Instance>, String),
    Pid(u32),
    CgroupV2 { id: u64, level: u32 },
    CgroupV1(PathBuf),
}

struct Target {
    id: u32,
    spec: WorkloadSpec,
    resolved: Resolved,
}

/// Checks every selector and sets up launched workloads, held, before
/// anything is loaded (so platform start-up is not recorded).
fn resolve_targets(specs: &[WorkloadSpec], env: &Env) -> Result<Vec<Target>, RecordError> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let name = spec.name.clone();
            let resolved = match &spec.selector {
                Selector::Run { command } => {
                    let argv = shlex::split(command)
                        .filter(|a| !a.is_empty())
                        .ok_or_else(|| RecordError::BadCommand { name: name.clone(), command: command.clone() })?;
                    let spec = spec.placement.instance(&name, vec![]);
                    let held = HostInstance::command(&argv, &spec, None)
                        .map_err(|e| launch_error(name, argv[0].clone(), e))?;
                    Resolved::Held(Box::new(held), argv[0].clone())
                }
                Selector::Platform { platform, workload } => {
                    let platform_err = |source| RecordError::Platform { name: name.clone(), source };
                    let kind = PlatformKind::parse(platform).map_err(platform_err)?;
                    let args = shlex::split(workload)
                        .filter(|a| !a.is_empty())
                        .ok_or_else(|| RecordError::BadCommand { name: name.clone(), command: workload.clone() })?;
                    let spec = spec.placement.instance(&name, args);
                    Resolved::Held(kind.create(&spec, env).map_err(platform_err)?, format!("{platform}:{workload}"))
                }
                Selector::Pid { pid } => {
                    if !procfs::process_alive(*pid) {
                        return Err(RecordError::NoSuchPid { name, pid: *pid });
                    }
                    Resolved::Pid(*pid)
                }
                Selector::Cgroup { path } => match procfs::cgroup_target(path.as_ref()) {
                    Ok(CgroupTarget::V2 { id, level }) => Resolved::CgroupV2 { id, level },
                    Ok(CgroupTarget::V1) => Resolved::CgroupV1(PathBuf::from(path)),
                    Err(e) => {
                        return Err(RecordError::NoSuchCgroup { name, path: path.clone(), reason: e.to_string() })
                    }
                },
            };
            Ok(Target { id: i as u32 + 1, spec: spec.clone(), resolved })
        })
        .collect()
}

/// A workload while the recording runs.
struct LiveWorkload {
    id: u32,
    spec: WorkloadSpec,
    started: Instant,
    ended: Option<Instant>,
    exit: Option<String>,
    launched: Option<Box<dyn Instance>>,
    pid: Option<u32>,
    cgroup_v1: Option<PathBuf>,
    /// Processes attributed from user space (the BPF side reports the rest).
    pids: BTreeSet<u32>,
}

impl LiveWorkload {
    /// Whether it can end on its own (a cgroup cannot).
    fn is_finite(&self) -> bool {
        self.launched.is_some() || self.pid.is_some()
    }

    fn poll(&mut self, now: Instant) {
        if self.ended.is_some() {
            return;
        }
        if let Some(child) = &mut self.launched {
            if let Some(exit) = child.try_wait() {
                self.exit = Some(exit);
                self.ended = Some(now);
            }
        } else if let Some(pid) = self.pid {
            if !procfs::process_alive(pid) {
                self.exit = Some("exited".into());
                self.ended = Some(now);
            }
        }
    }

    fn finish(&mut self, now: Instant) {
        self.poll(now);
        if self.ended.is_none() {
            self.ended = Some(now);
        }
    }

    fn run_time(&self) -> Duration {
        self.ended.unwrap_or_else(Instant::now) - self.started
    }
}

fn track(k: &Kernel<'_>, tgid: u32, workload: u32) -> Result<(), RecordError> {
    let (key, value) = (tgid.to_ne_bytes(), workload.to_ne_bytes());
    k.maps.tracked.update(&key, &value, MapFlags::ANY)?;
    k.maps.seen.update(&key, &value, MapFlags::ANY)?;
    Ok(())
}

/// Follows `pid` and the processes it has started so far (later ones are
/// followed across fork by the BPF side).
fn follow_tree(k: &Kernel<'_>, w: &mut LiveWorkload, pid: u32) -> Result<(), RecordError> {
    for p in std::iter::once(pid).chain(procfs::descendants(pid)) {
        track(k, p, w.id)?;
        w.pids.insert(p);
    }
    Ok(())
}

/// A platform failure while starting workload `name`: an I/O failure is a
/// failure to run `program`.
fn launch_error(name: String, program: String, e: PlatformError) -> RecordError {
    match e {
        PlatformError::Io { source, .. } => RecordError::Launch { name, program, source },
        source => RecordError::Platform { name, source },
    }
}

fn start_target(k: &Kernel<'_>, t: Target, started: Instant) -> Result<LiveWorkload, RecordError> {
    let mut w = LiveWorkload {
        id: t.id,
        spec: t.spec,
        started,
        ended: None,
        exit: None,
        launched: None,
        pid: None,
        cgroup_v1: None,
        pids: BTreeSet::new(),
    };
    match t.resolved {
        Resolved::Held(mut instance, program) => {
            for pid in instance.pids() {
                follow_tree(k, &mut w, pid)?;
            }
            w.started = Instant::now();
            instance.start().map_err(|e| launch_error(w.spec.name.clone(), program, e))?;
            w.launched = Some(instance);
        }
        Resolved::Pid(pid) => {
            follow_tree(k, &mut w, pid)?;
            w.pid = Some(pid);
        }
        Resolved::CgroupV2 { .. } => {}
        Resolved::CgroupV1(path) => w.cgroup_v1 = Some(path),
    }
    poll_cgroup_v1(k, &mut w)?;
    Ok(w)
}

/// cgroup v1 membership cannot be tested in the kernel: poll it.
fn poll_cgroup_v1(k: &Kernel<'_>, w: &mut LiveWorkload) -> Result<(), RecordError> {
    if let Some(path) = &w.cgroup_v1 {
        for pid in procfs::cgroup_procs(path) {
            if w.pids.insert(pid) {
                track(k, pid, w.id)?;
            }
        }
    }
    Ok(())
}

fn wait_for_end(
    cfg: &RecordConfig,
    k: &Kernel<'_>,
    live: &mut Vec<LiveWorkload>,
    started: Instant,
    progress: &mut impl FnMut(&Progress),
) -> Result<EndReason, RecordError> {
    let finite = cfg.joining.is_none() && live.iter().any(LiveWorkload::is_finite) && live.iter().all(|w| w.is_finite());
    loop {
        if let Some(joining) = &cfg.joining {
            while let Ok(j) = joining.try_recv() {
                let answer = join(k, live, j.name, j.selector, &j.pids);
                let _ = j.tracked.send(answer);
            }
        }
        let now = Instant::now();
        for w in live.iter_mut() {
            w.poll(now);
            poll_cgroup_v1(k, w)?;
        }
        let running = live.iter().filter(|w| w.ended.is_none()).count();
        progress(&Progress {
            elapsed: now - started,
            events: read_counter(k, 0)?,
            running,
            workloads: live.len(),
        });
        if cfg.stop.load(Ordering::Relaxed) {
            return Ok(EndReason::Interrupted);
        }
        if cfg.duration.is_some_and(|d| now - started >= d) {
            return Ok(EndReason::Duration);
        }
        if finite && running == 0 {
            return Ok(EndReason::WorkloadsExited);
        }
        std::thread::sleep(TICK);
    }
}

/// Adds a workload to a recording under way.
fn join(k: &Kernel<'_>, live: &mut Vec<LiveWorkload>, name: String, selector: Selector, pids: &[u32]) -> Result<(), String> {
    if live.len() >= MAX_WORKLOADS {
        return Err(RecordError::TooManyWorkloads.to_string());
    }
    if live.iter().any(|w| w.spec.name == name) {
        return Err(RecordError::DuplicateName(name).to_string());
    }
    let mut w = LiveWorkload {
        id: live.len() as u32 + 1,
        spec: WorkloadSpec { name, selector, placement: Placement::default() },
        started: Instant::now(),
        ended: None,
        exit: None,
        launched: None,
        pid: pids.first().copied(),
        cgroup_v1: None,
        pids: BTreeSet::new(),
    };
    for &pid in pids {
        follow_tree(k, &mut w, pid).map_err(|e| e.to_string())?;
    }
    live.push(w);
    Ok(())
}

fn read_counter(k: &Kernel<'_>, index: u32) -> Result<u64, RecordError> {
    Ok(k
        .maps
        .counters
        .lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY)?
        .map(|v| abi::sum_percpu(&v))
        .unwrap_or(0))
}

fn collect(
    k: &Kernel<'_>,
    symbols: &SymbolTable,
    live: &[LiveWorkload],
    started_unix_ns: u64,
    elapsed: Duration,
    end_reason: EndReason,
) -> Result<Trace, RecordError> {
    let maps = &k.maps;
    let (mut records, mut samples) = (Vec::new(), Vec::new());
    for key in maps.aggregates.keys() {
        let Some(value) = maps.aggregates.lookup(&key, MapFlags::ANY)? else { continue };
        match abi::is_sample(&key) {
            true => samples.push(abi::record(&key, &value)),
            false => records.push(abi::record(&key, &value)),
        }
    }
    if !samples.is_empty() {
        records = sampling::apportion(records, samples);
    }
    records.sort_by_key(|r| (r.workload, r.tgid, r.lock_addr, r.generation, r.flags, r.stack_id, r.in_interrupt));

    let stack_ids: BTreeSet<i32> = records.iter().map(|r| r.stack_id).filter(|&id| id >= 0).collect();
    let mut stacks = Vec::new();
    for id in stack_ids {
        if let Some(bytes) = maps.stacks.lookup(&(id as u32).to_ne_bytes(), MapFlags::ANY)? {
            let frames = bytes.chunks_exact(8).map(|c| abi::u64_at(c, 0)).take_while(|&ip| ip != 0).collect();
            stacks.push(Stack { id, frames });
        }
    }

    let mut pids: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for key in maps.seen.keys() {
        if let Some(v) = maps.seen.lookup(&key, MapFlags::ANY)? {
            pids.entry(abi::u32_at(&v, 0)).or_default().insert(abi::u32_at(&key, 0));
        }
    }
    for r in &records {
        pids.entry(r.workload).or_default().insert(r.tgid);
    }

    let mut values = [0u64; NR_COUNTERS as usize];
    for (i, v) in values.iter_mut().enumerate() {
        *v = read_counter(k, i as u32)?;
    }
    let mut counters: Counters = abi::counters_from(&values);
    counters.recursion_misses = k.recursion_misses();

    mark_interrupt_context(&mut records, &stacks, symbols);
    counters.irq_filtered = records.iter().filter(|r| r.in_interrupt).map(|r| r.count).sum();
    let kallsyms_all = symbols.has_data_symbols();
    let lock_addrs = records.iter().map(|r| r.lock_addr).filter(|_| kallsyms_all);
    let addrs = stacks.iter().flat_map(|s| s.frames.iter().copied()).chain(lock_addrs);
    let snapshot = symbols.snapshot(addrs);

    let mut workloads = Vec::new();
    for w in live {
        let irq_filtered = records.iter().filter(|r| r.workload == w.id && r.in_interrupt).map(|r| r.count).sum();
        let mut seen = pids.remove(&w.id).unwrap_or_default();
        seen.extend(&w.pids);
        workloads.push(Workload {
            id: w.id,
            name: w.spec.name.clone(),
            selector: w.spec.selector.clone(),
            pids: seen.into_iter().collect(),
            run_time_ns: w.run_time().as_nanos() as u64,
            exit: w.exit.clone(),
            irq_filtered,
        });
    }

    Ok(Trace {
        meta: TraceMeta {
            format: lockscope_trace::FORMAT_NAME.into(),
            version: lockscope_trace::FORMAT_VERSION,
            lockscope_version: env!("CARGO_PKG_VERSION").into(),
            kernel_release: procfs::kernel_release(),
            hostname: procfs::hostname(),
            mode: k.mode,
            hook: k.hook.clone(),
            attached: k.attached.clone(),
            notes: k.notes.clone(),
            started_unix_ns,
            ended_unix_ns: started_unix_ns + elapsed.as_nanos() as u64,
            end_reason,
            kallsyms_all,
            workloads,
            counters,
            files: vec![],
            label: None,
        },
        records,
        stacks,
        symbols: snapshot,
        sites: vec![],
    })
}

/// Marks records whose stack shows an interrupt being served.
fn mark_interrupt_context(records: &mut [LockRecord], stacks: &[Stack], symbols: &SymbolTable) {
    let interrupt: BTreeSet<i32> = stacks
        .iter()
        .filter(|s| is_interrupt_stack(s.frames.iter().filter_map(|&a| symbols.lookup(a).map(|(sym, _)| sym.name.as_str()))))
        .map(|s| s.id)
        .collect();
    for r in records {
        // The BPF side may have read it from the preempt count already.
        r.in_interrupt |= interrupt.contains(&r.stack_id);
    }
}

fn unix_now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}
