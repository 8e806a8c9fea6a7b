//! The recorder: loads the contention programs, selects the workloads'
//! processes, waits for the recording to end, and reads the in-kernel
//! aggregates into a [`Trace`].

use std::collections::{BTreeMap, BTreeSet};
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags};
use lockscope_trace::context::is_interrupt_stack;
use lockscope_trace::{
    Counters, EndReason, LockRecord, Mode, Selector, Stack, SymbolTable, Trace, TraceMeta, Workload,
};

use crate::abi::{self, AggKey, AggVal, NR_COUNTERS};
use crate::contention_skel::{ContentionSkel, ContentionSkelBuilder};
use crate::launch::{spawn_held, Launched};
use crate::libbpf_log;
use crate::privileges::Privileges;
use crate::procfs::{self, CgroupTarget};

const MAX_WORKLOADS: usize = 63; // ids 1..=63 index the 64-entry irq_counts array
const MAX_CGROUP_TARGETS: usize = 16;
const TICK: Duration = Duration::from_millis(100);

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
}

/// Which contention hook to use: the best available, or one in particular.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookRequest {
    Auto,
    TpBtf,
    Tracepoint,
}

pub struct RecordConfig {
    pub mode: ModeRequest,
    pub hook: HookRequest,
    pub workloads: Vec<WorkloadSpec>,
    pub duration: Option<Duration>,
    /// Capacity of the in-kernel aggregation map.
    pub max_records: u32,
    /// Set (e.g. by a Ctrl-C handler) to end the recording early.
    pub stop: Arc<AtomicBool>,
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
    #[error("acquire mode is not available in this version of lockscope; use --mode contention (or auto)")]
    AcquireUnavailable,
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
    if cfg.mode == ModeRequest::Acquire {
        return Err(RecordError::AcquireUnavailable);
    }
    let targets = resolve_targets(&cfg.workloads)?;
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

    let mut objects = [MaybeUninit::uninit(), MaybeUninit::uninit()];
    let (skel, hook) = load(&mut objects, cfg.hook, cfg.max_records, cgroups_v2.len())?;
    let links = attach(&skel, hook)?;
    for (i, &(id, level, workload)) in cgroups_v2.iter().enumerate() {
        let value = abi::cgroup_target(id, level, workload);
        skel.maps.cgroup_targets.update(&(i as u32).to_ne_bytes(), &value, MapFlags::ANY)?;
    }

    let started_unix_ns = unix_now_ns();
    let started = Instant::now();
    let mut live = Vec::new();
    for t in targets {
        live.push(start_target(&skel, t, started)?);
    }

    let end_reason = wait_for_end(cfg, &skel, &mut live, started, &mut progress)?;
    drop(links); // detach before reading, so the picture is final
    let ended = Instant::now();
    for w in &mut live {
        if let Some(child) = &mut w.launched {
            child.terminate(Duration::from_secs(2));
        }
        w.finish(ended);
    }
    let trace = collect(&skel, hook, &live, started_unix_ns, ended - started, end_reason)?;
    Ok(trace)
}

fn validate(cfg: &RecordConfig) -> Result<(), RecordError> {
    if cfg.workloads.is_empty() {
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
    Run(Vec<String>),
    Pid(u32),
    CgroupV2 { id: u64, level: u32 },
    CgroupV1(PathBuf),
}

struct Target {
    id: u32,
    spec: WorkloadSpec,
    resolved: Resolved,
}

/// Checks every selector before anything is loaded or launched.
fn resolve_targets(specs: &[WorkloadSpec]) -> Result<Vec<Target>, RecordError> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let name = spec.name.clone();
            let resolved = match &spec.selector {
                Selector::Run { command } => {
                    let argv = shlex::split(command)
                        .filter(|a| !a.is_empty())
                        .ok_or_else(|| RecordError::BadCommand { name, command: command.clone() })?;
                    Resolved::Run(argv)
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum ContentionHook {
    TpBtf,
    Tracepoint,
}

impl ContentionHook {
    fn name(self) -> &'static str {
        match self {
            ContentionHook::TpBtf => "tp_btf",
            ContentionHook::Tracepoint => "tracepoint",
        }
    }
}

/// Loads with tp_btf programs, falling back to classic tracepoints. A failed
/// load consumes its object, hence one slot per attempt.
fn load<'obj>(
    objects: &'obj mut [MaybeUninit<libbpf_rs::OpenObject>; 2],
    request: HookRequest,
    max_records: u32,
    n_cgroups: usize,
) -> Result<(ContentionSkel<'obj>, ContentionHook), RecordError> {
    let [first, second] = objects;
    let tp_btf = if request == HookRequest::Tracepoint {
        "not tried (--hook tracepoint)".to_owned()
    } else {
        match load_with(first, ContentionHook::TpBtf, max_records, n_cgroups) {
            Ok(skel) => return Ok((skel, ContentionHook::TpBtf)),
            Err(e) if request == HookRequest::TpBtf => {
                return Err(RecordError::Unsupported { tp_btf: e, tracepoint: "not tried (--hook tp_btf)".into() })
            }
            Err(e) => e,
        }
    };
    tracing::info!("tp_btf contention programs refused ({tp_btf}); trying classic tracepoints");
    if let Err(e) = procfs::ensure_tracefs() {
        return Err(RecordError::Unsupported { tp_btf, tracepoint: format!("tracefs unavailable: {e}") });
    }
    match load_with(second, ContentionHook::Tracepoint, max_records, n_cgroups) {
        Ok(skel) => Ok((skel, ContentionHook::Tracepoint)),
        Err(tracepoint) => Err(RecordError::Unsupported { tp_btf, tracepoint }),
    }
}

fn load_with<'obj>(
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    hook: ContentionHook,
    max_records: u32,
    n_cgroups: usize,
) -> Result<ContentionSkel<'obj>, String> {
    libbpf_log::capture();
    let mut open = ContentionSkelBuilder::default().open(object).map_err(libbpf_log::explain)?;
    let btf = hook == ContentionHook::TpBtf;
    open.progs.lks_btf_begin.set_autoload(btf);
    open.progs.lks_btf_end.set_autoload(btf);
    open.progs.lks_tp_begin.set_autoload(!btf);
    open.progs.lks_tp_end.set_autoload(!btf);
    open.maps.aggregates.set_max_entries(max_records).map_err(|e| e.to_string())?;
    if let Some(rodata) = open.maps.rodata_data.as_deref_mut() {
        rodata.n_cgroup_targets = n_cgroups as u32;
    }
    open.load().map_err(libbpf_log::explain)
}

fn attach(skel: &ContentionSkel<'_>, hook: ContentionHook) -> Result<Vec<Link>, RecordError> {
    let p = &skel.progs;
    let progs = match hook {
        ContentionHook::TpBtf => [&p.lks_btf_begin, &p.lks_btf_end, &p.lks_fork, &p.lks_exit],
        ContentionHook::Tracepoint => [&p.lks_tp_begin, &p.lks_tp_end, &p.lks_fork, &p.lks_exit],
    };
    progs
        .into_iter()
        .map(|prog| prog.attach())
        .collect::<Result<_, _>>()
        .map_err(|e| RecordError::Attach(libbpf_log::explain(e)))
}

/// A workload while the recording runs.
struct LiveWorkload {
    id: u32,
    spec: WorkloadSpec,
    started: Instant,
    ended: Option<Instant>,
    exit: Option<String>,
    launched: Option<Launched>,
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
                self.exit = Some(exit.to_owned());
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

fn track(skel: &ContentionSkel<'_>, tgid: u32, workload: u32) -> Result<(), RecordError> {
    let (k, v) = (tgid.to_ne_bytes(), workload.to_ne_bytes());
    skel.maps.tracked_tgids.update(&k, &v, MapFlags::ANY)?;
    skel.maps.seen_tgids.update(&k, &v, MapFlags::ANY)?;
    Ok(())
}

fn start_target(skel: &ContentionSkel<'_>, t: Target, started: Instant) -> Result<LiveWorkload, RecordError> {
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
        Resolved::Run(argv) => {
            let launch_err =
                |source| RecordError::Launch { name: w.spec.name.clone(), program: argv[0].clone(), source };
            let mut child = spawn_held(&argv).map_err(launch_err)?;
            track(skel, child.pid, w.id)?;
            w.pids.insert(child.pid);
            w.started = Instant::now();
            child.release().map_err(launch_err)?;
            w.launched = Some(child);
        }
        Resolved::Pid(pid) => {
            for p in std::iter::once(pid).chain(procfs::descendants(pid)) {
                track(skel, p, w.id)?;
                w.pids.insert(p);
            }
            w.pid = Some(pid);
        }
        Resolved::CgroupV2 { .. } => {}
        Resolved::CgroupV1(path) => w.cgroup_v1 = Some(path),
    }
    poll_cgroup_v1(skel, &mut w)?;
    Ok(w)
}

/// cgroup v1 membership cannot be tested in the kernel: poll it.
fn poll_cgroup_v1(skel: &ContentionSkel<'_>, w: &mut LiveWorkload) -> Result<(), RecordError> {
    if let Some(path) = &w.cgroup_v1 {
        for pid in procfs::cgroup_procs(path) {
            if w.pids.insert(pid) {
                track(skel, pid, w.id)?;
            }
        }
    }
    Ok(())
}

fn wait_for_end(
    cfg: &RecordConfig,
    skel: &ContentionSkel<'_>,
    live: &mut [LiveWorkload],
    started: Instant,
    progress: &mut impl FnMut(&Progress),
) -> Result<EndReason, RecordError> {
    let finite = live.iter().any(LiveWorkload::is_finite) && live.iter().all(|w| w.is_finite());
    loop {
        let now = Instant::now();
        for w in live.iter_mut() {
            w.poll(now);
            poll_cgroup_v1(skel, w)?;
        }
        let running = live.iter().filter(|w| w.ended.is_none()).count();
        progress(&Progress {
            elapsed: now - started,
            events: read_counter(skel, 0)?,
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

fn read_counter(skel: &ContentionSkel<'_>, index: u32) -> Result<u64, RecordError> {
    Ok(skel
        .maps
        .counters
        .lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY)?
        .map(|v| abi::sum_percpu(&v))
        .unwrap_or(0))
}

fn collect(
    skel: &ContentionSkel<'_>,
    hook: ContentionHook,
    live: &[LiveWorkload],
    started_unix_ns: u64,
    elapsed: Duration,
    end_reason: EndReason,
) -> Result<Trace, RecordError> {
    let maps = &skel.maps;
    let mut records = Vec::new();
    for key in maps.aggregates.keys() {
        let Some(value) = maps.aggregates.lookup(&key, MapFlags::ANY)? else { continue };
        let (k, v) = (AggKey::parse(&key), AggVal::parse(&value));
        records.push(LockRecord {
            workload: k.workload,
            tgid: k.tgid,
            lock_addr: k.lock,
            generation: 0,
            flags: k.flags,
            stack_id: k.stack_id,
            count: v.count,
            wait_total_ns: v.wait_total_ns,
            wait_max_ns: v.wait_max_ns,
            hold_total_ns: 0,
            hold_max_ns: 0,
            in_interrupt: false,
        });
    }
    records.sort_by_key(|r| (r.workload, r.tgid, r.lock_addr, r.flags, r.stack_id));

    let stack_ids: BTreeSet<i32> = records.iter().map(|r| r.stack_id).filter(|&id| id >= 0).collect();
    let mut stacks = Vec::new();
    for id in stack_ids {
        if let Some(bytes) = maps.stacks.lookup(&(id as u32).to_ne_bytes(), MapFlags::ANY)? {
            let frames = bytes.chunks_exact(8).map(|c| abi::u64_at(c, 0)).take_while(|&ip| ip != 0).collect();
            stacks.push(Stack { id, frames });
        }
    }

    let mut pids: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for key in maps.seen_tgids.keys() {
        if let Some(v) = maps.seen_tgids.lookup(&key, MapFlags::ANY)? {
            let tgid = u32::from_ne_bytes(key[..4].try_into().unwrap());
            pids.entry(u32::from_ne_bytes(v[..4].try_into().unwrap())).or_default().insert(tgid);
        }
    }
    for r in &records {
        pids.entry(r.workload).or_default().insert(r.tgid);
    }

    let mut values = [0u64; NR_COUNTERS as usize];
    for (i, v) in values.iter_mut().enumerate() {
        *v = read_counter(skel, i as u32)?;
    }
    let mut counters: Counters = abi::counters_from(&values);
    counters.recursion_misses = recursion_misses(skel, hook);

    let symbols = SymbolTable::load()?;
    mark_interrupt_context(&mut records, &stacks, &symbols);
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
            mode: Mode::Contention,
            hook: hook.name().into(),
            started_unix_ns,
            ended_unix_ns: started_unix_ns + elapsed.as_nanos() as u64,
            end_reason,
            kallsyms_all,
            workloads,
            counters,
            files: vec![],
        },
        records,
        stacks,
        symbols: snapshot,
    })
}

/// Runs the kernel skipped because a BPF program was already active on the CPU.
fn recursion_misses(skel: &ContentionSkel<'_>, hook: ContentionHook) -> u64 {
    let p = &skel.progs;
    let progs = match hook {
        ContentionHook::TpBtf => [&p.lks_btf_begin, &p.lks_btf_end],
        ContentionHook::Tracepoint => [&p.lks_tp_begin, &p.lks_tp_end],
    };
    progs
        .iter()
        .map(|prog| {
            use std::os::fd::AsRawFd;
            let mut info = libbpf_sys::bpf_prog_info::default();
            let mut len = std::mem::size_of_val(&info) as u32;
            // SAFETY: info is a valid bpf_prog_info of `len` bytes.
            let ret = unsafe {
                libbpf_sys::bpf_obj_get_info_by_fd(prog.as_fd().as_raw_fd(), (&mut info as *mut libbpf_sys::bpf_prog_info).cast(), &mut len)
            };
            if ret == 0 { info.recursion_misses } else { 0 }
        })
        .sum()
}

/// Marks records whose stack shows an interrupt being served.
fn mark_interrupt_context(records: &mut [LockRecord], stacks: &[Stack], symbols: &SymbolTable) {
    let interrupt: BTreeSet<i32> = stacks
        .iter()
        .filter(|s| is_interrupt_stack(s.frames.iter().filter_map(|&a| symbols.lookup(a).map(|(sym, _)| sym.name.as_str()))))
        .map(|s| s.id)
        .collect();
    for r in records {
        r.in_interrupt = interrupt.contains(&r.stack_id);
    }
}

fn unix_now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}
