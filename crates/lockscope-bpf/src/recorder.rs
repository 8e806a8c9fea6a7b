//! The recorder: a recording session over typed targets. [`record`] loads
//! and attaches the programs, hands a [`Session`] to its caller, which
//! follows processes and cgroups as it starts or finds them and says when
//! they end, then reads the in-kernel aggregates into a [`Trace`]. The
//! recorder knows nothing of platforms or workloads: whoever starts them
//! hands their processes to the session.

use std::collections::{BTreeMap, BTreeSet};
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libbpf_rs::MapFlags;
use lockscope_proc::procfs::{self, CgroupTarget};
use lockscope_trace::context::is_interrupt_stack;
use lockscope_trace::{
    Counters, EndReason, HeldWait, LockPlace, LockRecord, Mode, RecorderCost, Selector, SlabCache, Stack, SymbolTable, Trace, TraceMeta,
    Workload,
};

use crate::abi::{self, NR_COUNTERS};
use crate::entries::hash_entries;
use crate::loader::{self, Kernel};
use crate::privileges::Privileges;
use crate::probe::{self, Hook};
use crate::sampling;

/// Workloads one recording can tell apart (ids 1..=63 index the 64-entry irq_counts array).
pub const MAX_WORKLOADS: usize = 63;
const MAX_CGROUP_TARGETS: usize = 16;
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

/// Whether a recording tells a lock from the one an address held before it.
/// Keeping lifetimes costs a program run on every slab free on the machine
/// (and, in acquire mode, on every lock initialisation; BENCHMARKS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetimes {
    /// In either mode: a reused address is a new lock (generation).
    Kept,
    /// In neither: an address reused for another object's lock passes for
    /// the lock it replaced (klockstat's view, and the cheapest).
    Dropped,
    /// Only in acquire mode, whose expected waits are per lock life; a
    /// contention-mode measure that goes by lock address does without.
    AcquireModeOnly,
}

impl Lifetimes {
    /// Whether a recording in `mode` keeps them.
    pub fn kept_in(self, mode: Mode) -> bool {
        match self {
            Lifetimes::Kept => true,
            Lifetimes::Dropped => false,
            Lifetimes::AcquireModeOnly => mode == Mode::Acquire,
        }
    }
}

/// How to record: what the programs hook and keep.
#[derive(Clone, Debug)]
pub struct RecordOptions {
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
    /// In which mode to end a lock's life when the slab object holding it
    /// is freed (and, in acquire mode, when a lock is initialised), so that a
    /// reused address is a new lock.
    pub lifetimes: Lifetimes,
    /// Capacity of the in-kernel aggregation map.
    pub max_records: u32,
    /// Have the kernel time the recorder's own programs while it records
    /// (BPF statistics: two clock reads more per program run), for the
    /// trace's `recorder_cost`.
    pub time_programs: bool,
}

impl Default for RecordOptions {
    /// As `lockscope record` without options: any mode, every lock class,
    /// full stacks and hold times.
    fn default() -> Self {
        RecordOptions {
            mode: ModeRequest::Auto,
            hook: HookRequest::Auto,
            lock_classes: LockClass::ALL.to_vec(),
            stack_depth: DEFAULT_STACK_DEPTH,
            hold_times: true,
            stack_sample: 1,
            lifetimes: Lifetimes::Kept,
            max_records: DEFAULT_MAX_RECORDS,
            time_programs: false,
        }
    }
}

/// A workload of a session, as [`Session::follow_processes`] and
/// [`Session::follow_cgroup`] return it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WorkloadId(u32);

/// Where a session stands, for progress displays.
pub struct Progress {
    pub elapsed: Duration,
    pub events: u64,
    /// Workloads not yet ended.
    pub running: usize,
    pub workloads: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("recording needs privileges this process lacks: {}", Privileges::ADVICE)]
    Privileges,
    #[error("acquire mode is unavailable on this kernel: {0}; use --mode contention (or auto), see `lockscope doctor`")]
    AcquireUnavailable(String),
    #[error("at most {MAX_WORKLOADS} workloads can be recorded together")]
    TooManyWorkloads,
    #[error("at most {MAX_CGROUP_TARGETS} cgroup v2 workloads can be recorded together")]
    TooManyCgroups,
    #[error("workload name {0:?} is used twice; give each workload its own name")]
    DuplicateName(String),
    #[error("workload {name}: {path} is not a cgroup: {reason}")]
    NoSuchCgroup { name: String, path: String, reason: String },
    #[error("this kernel refused the lock contention tracepoints (tp_btf: {tp_btf}; tracepoint: {tracepoint}); see `lockscope doctor`")]
    Unsupported { tp_btf: String, tracepoint: String },
    #[error("attaching the recorder's programs failed: {0}")]
    Attach(String),
    #[error("the kernel would not time BPF programs (BPF_ENABLE_STATS: {0}); record without --time-programs")]
    ProgramTiming(std::io::Error),
    #[error("BPF map access failed: {0}")]
    Map(#[from] libbpf_rs::Error),
    #[error(transparent)]
    Kallsyms(#[from] lockscope_trace::KallsymsError),
}

/// Ok when this process may load and attach the recorder's programs.
pub fn check_privileges() -> Result<(), RecordError> {
    match Privileges::current().can_trace() {
        true => Ok(()),
        false => Err(RecordError::Privileges),
    }
}

/// Loads and attaches the programs, lets `drive` follow workloads until it
/// decides the recording is over (it returns why), and reads the trace. The
/// programs are detached on every path out of this function; `drive` should
/// stop what it started before it returns, so nothing it launched is inside
/// a traced primitive while the kernel takes the probes down.
pub fn record<E: From<RecordError>>(
    options: &RecordOptions,
    drive: impl FnOnce(&mut Session<'_>) -> Result<EndReason, E>,
) -> Result<Trace, E> {
    check_privileges()?;
    // Before the programs load, so every run of theirs is timed.
    let timing = options.time_programs.then(enable_program_timing).transpose()?;
    let settings = loader::Settings {
        hook: options.hook,
        max_records: options.max_records,
        lock_classes: &options.lock_classes,
        stack_depth: options.stack_depth,
        hold_times: options.hold_times,
        stack_sample: options.stack_sample,
        lifetimes: options.lifetimes,
    };
    // The skeletons must outlive the Kernel view borrowed from them.
    let mut acquire_objects = [MaybeUninit::uninit(), MaybeUninit::uninit()];
    let mut contention_objects = [MaybeUninit::uninit(), MaybeUninit::uninit()];
    let (acquire_skel, contention_skel);
    // A hook names its mode.
    let mode = match (options.mode, options.hook) {
        (ModeRequest::Auto, HookRequest::TpBtf | HookRequest::Tracepoint) => ModeRequest::Contention,
        (ModeRequest::Auto, HookRequest::Fentry | HookRequest::Kprobe) => ModeRequest::Acquire,
        (mode, _) => mode,
    };
    let kernel = match mode {
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
            // Acquire where the kernel both loads and attaches it, else
            // contention. An empty program on each of acquire mode's hooks
            // tells first whether either can work: verifying every acquire
            // program only to be refused the attach takes seconds.
            let refused = |hook: Hook| probe::try_hook(hook).err().map(|why| format!("{}: {why}", hook.describe()));
            let both_refused = refused(Hook::Fentry).and_then(|fentry| Some(format!("{fentry}; {}", refused(Hook::Kprobe)?)));
            let acquire = match both_refused {
                Some(why) => Err(why),
                None => match loader::load_acquire(&mut acquire_objects, &settings) {
                    Ok((skel, why)) => {
                        acquire_skel = skel;
                        loader::start_acquire(&acquire_skel, why, &settings)
                    }
                    Err(why) => Err(why),
                },
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
    let mut session =
        Session { kernel, started: Instant::now(), started_unix_ns: unix_now_ns(), workloads: Vec::new(), cgroups_v2: 0, timing };
    let end_reason = drive(&mut session)?;
    Ok(session.finish(end_reason)?)
}

/// A recording under way: the programs are attached; workloads are followed
/// from the moment they are handed over.
pub struct Session<'k> {
    kernel: Kernel<'k>,
    started: Instant,
    started_unix_ns: u64,
    workloads: Vec<Followed>,
    /// Entries of the kernel's `cgroup_targets` array in use.
    cgroups_v2: u32,
    /// Held while the kernel times BPF programs (`time_programs`).
    timing: Option<OwnedFd>,
}

/// Turns on the kernel's timing of BPF programs, for as long as the returned
/// file descriptor is open.
fn enable_program_timing() -> Result<OwnedFd, RecordError> {
    // SAFETY: a plain syscall wrapper; a non-negative result is a new fd we own.
    let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
    match fd {
        fd if fd >= 0 => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        err => Err(RecordError::ProgramTiming(std::io::Error::from_raw_os_error(-err))),
    }
}

/// A workload the session follows.
struct Followed {
    name: String,
    selector: Selector,
    started: Instant,
    ended: Option<Instant>,
    exit: Option<String>,
    /// cgroup v1 membership cannot be tested in the kernel: it is polled.
    cgroup_v1: Option<PathBuf>,
    /// Processes attributed from user space (the BPF side reports the rest).
    pids: BTreeSet<u32>,
}

impl<'k> Session<'k> {
    /// Follows `pids` and their descendants, from now on, as workload `name`
    /// (later children are followed across fork by the BPF side). For a
    /// process held before its first instruction, follow it and then let it
    /// run: nothing it does is missed.
    pub fn follow_processes(&mut self, name: &str, selector: Selector, pids: &[u32]) -> Result<WorkloadId, RecordError> {
        let id = self.add(name, selector)?;
        for &pid in pids {
            for p in std::iter::once(pid).chain(procfs::descendants(pid)) {
                self.track(id, p)?;
            }
        }
        Ok(id)
    }

    /// Follows every process in the cgroup at `path` and its descendants
    /// (cgroup v2: matched in the kernel; v1: polled by [`Session::poll`]);
    /// `selector` says how the trace describes it.
    pub fn follow_cgroup(&mut self, name: &str, selector: Selector, path: &Path) -> Result<WorkloadId, RecordError> {
        let target = procfs::cgroup_target(path).map_err(|e| RecordError::NoSuchCgroup {
            name: name.to_owned(),
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        if matches!(target, CgroupTarget::V2 { .. }) && self.cgroups_v2 as usize >= MAX_CGROUP_TARGETS {
            return Err(RecordError::TooManyCgroups);
        }
        let id = self.add(name, selector)?;
        match target {
            CgroupTarget::V2 { id: cgroup, level } => {
                // The BPF side reads the array up to its first empty entry.
                let value = abi::cgroup_target(cgroup, level, id.0);
                self.kernel.maps.cgroup_targets.update(&self.cgroups_v2.to_ne_bytes(), &value, MapFlags::ANY)?;
                self.cgroups_v2 += 1;
            }
            CgroupTarget::V1 => {
                self.workloads[id.0 as usize - 1].cgroup_v1 = Some(path.to_owned());
                self.poll_cgroup_v1(id)?;
            }
        }
        Ok(id)
    }

    /// The workload's run time starts now (it was followed while held, and
    /// has just been let run).
    pub fn restart_clock(&mut self, id: WorkloadId) {
        self.workload(id).started = Instant::now();
    }

    /// The workload ended now (`exit`: how, when known). Its run time, the
    /// denominator of its rates, stops here.
    pub fn end(&mut self, id: WorkloadId, exit: Option<String>) {
        let w = self.workload(id);
        if w.ended.is_none() {
            w.ended = Some(Instant::now());
            w.exit = exit;
        }
    }

    /// Whether [`Session::end`] was called for the workload.
    pub fn has_ended(&self, id: WorkloadId) -> bool {
        self.workloads[id.0 as usize - 1].ended.is_some()
    }

    /// Polls cgroup v1 membership, and says where the recording stands.
    pub fn poll(&mut self) -> Result<Progress, RecordError> {
        for i in 0..self.workloads.len() {
            self.poll_cgroup_v1(WorkloadId(i as u32 + 1))?;
        }
        Ok(Progress {
            elapsed: self.started.elapsed(),
            events: self.counter(abi::EVENTS)?,
            running: self.workloads.iter().filter(|w| w.ended.is_none()).count(),
            workloads: self.workloads.len(),
        })
    }

    fn add(&mut self, name: &str, selector: Selector) -> Result<WorkloadId, RecordError> {
        if self.workloads.len() >= MAX_WORKLOADS {
            return Err(RecordError::TooManyWorkloads);
        }
        if self.workloads.iter().any(|w| w.name == name) {
            return Err(RecordError::DuplicateName(name.to_owned()));
        }
        self.workloads.push(Followed {
            name: name.to_owned(),
            selector,
            started: Instant::now(),
            ended: None,
            exit: None,
            cgroup_v1: None,
            pids: BTreeSet::new(),
        });
        Ok(WorkloadId(self.workloads.len() as u32))
    }

    fn workload(&mut self, id: WorkloadId) -> &mut Followed {
        &mut self.workloads[id.0 as usize - 1]
    }

    fn track(&mut self, id: WorkloadId, tgid: u32) -> Result<(), RecordError> {
        let (key, value) = (tgid.to_ne_bytes(), id.0.to_ne_bytes());
        self.kernel.maps.tracked.update(&key, &value, MapFlags::ANY)?;
        self.kernel.maps.seen.update(&key, &value, MapFlags::ANY)?;
        self.workload(id).pids.insert(tgid);
        Ok(())
    }

    fn poll_cgroup_v1(&mut self, id: WorkloadId) -> Result<(), RecordError> {
        let Some(path) = self.workload(id).cgroup_v1.clone() else { return Ok(()) };
        for pid in procfs::cgroup_procs(&path) {
            if !self.workload(id).pids.contains(&pid) {
                self.track(id, pid)?;
            }
        }
        Ok(())
    }

    fn counter(&self, index: u32) -> Result<u64, RecordError> {
        Ok(self.kernel.maps.counters.lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY)?.map(|v| abi::sum_percpu(&v)).unwrap_or(0))
    }

    /// Ends what has not ended, detaches the programs and reads the trace.
    fn finish(mut self, end_reason: EndReason) -> Result<Trace, RecordError> {
        let ended = Instant::now();
        for w in &mut self.workloads {
            w.ended.get_or_insert(ended);
        }
        // Symbols before detaching: the trampolines in the stacks leave kallsyms then.
        let symbols = SymbolTable::load()?;
        self.kernel = self.kernel.detach(); // before reading, so the picture is final
        self.collect(&symbols, ended - self.started, end_reason)
    }

    /// Each CPU's `runqueues`, as the programs noted it (0: not seen), up to the last CPU seen.
    fn runqueues(&self) -> Result<Vec<u64>, RecordError> {
        let maps = &self.kernel.maps.places;
        let mut found = vec![];
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.clamp(1, 1024) as u32;
        for cpu in 0..cpus {
            let value = maps.runqueues.lookup(&cpu.to_ne_bytes(), MapFlags::ANY)?;
            found.push(value.map_or(0, |v| abi::u64_from(&v)));
        }
        while found.last() == Some(&0) {
            found.pop();
        }
        Ok(found)
    }

    /// Where the recorded locks live, as the programs noted it.
    fn places(&self) -> Result<Vec<LockPlace>, RecordError> {
        let maps = &self.kernel.maps.places;
        let caches: BTreeMap<u64, SlabCache> = hash_entries(maps.caches)?.iter().map(|(key, value)| abi::slab_cache(key, value)).collect();
        let mut places = vec![];
        for (key, value) in hash_entries(maps.locks)? {
            places.push(abi::lock_place(&key, &value, &caches));
        }
        places.sort_by_key(|p| (p.lock_addr, p.generation));
        Ok(places)
    }

    fn collect(&self, symbols: &SymbolTable, elapsed: Duration, end_reason: EndReason) -> Result<Trace, RecordError> {
        let k = &self.kernel;
        let maps = &k.maps;
        let (mut records, mut samples) = (Vec::new(), Vec::new());
        for (key, value) in hash_entries(maps.aggregates)? {
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
                stacks.push(Stack { id, frames: abi::frames(&bytes) });
            }
        }

        let mut pids: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
        for (key, v) in hash_entries(maps.seen)? {
            pids.entry(abi::u32_from(&v)).or_default().insert(abi::u32_from(&key));
        }
        for r in &records {
            pids.entry(r.workload).or_default().insert(r.tgid);
        }

        let (places, runqueues) = (self.places()?, self.runqueues()?);
        let held_waits = self.held_waits(&pids)?;

        let mut values = [0u64; NR_COUNTERS];
        for (i, v) in values.iter_mut().enumerate() {
            *v = self.counter(i as u32)?;
        }
        let mut counters: Counters = abi::counters_from(&values);
        let program_stats = k.program_stats();
        counters.recursion_misses = program_stats.iter().map(|p| p.recursion_misses).sum();
        let recorder_cost = self.timing.as_ref().map(|_| RecorderCost::of(program_stats.into_iter().map(|p| p.cost)));

        mark_interrupt_context(&mut records, &stacks, symbols);
        counters.irq_filtered = records.iter().filter(|r| r.in_interrupt).map(|r| r.count).sum();
        let kallsyms_all = symbols.has_data_symbols();
        let lock_addrs = records.iter().map(|r| r.lock_addr).filter(|_| kallsyms_all);
        let addrs = stacks.iter().flat_map(|s| s.frames.iter().copied()).chain(lock_addrs);
        let snapshot = symbols.snapshot(addrs);

        let workloads = self
            .workloads
            .iter()
            .zip(1..)
            .map(|(w, id)| {
                let irq_filtered = records.iter().filter(|r| r.workload == id && r.in_interrupt).map(|r| r.count).sum();
                let mut seen = pids.remove(&id).unwrap_or_default();
                seen.extend(&w.pids);
                Workload {
                    id,
                    name: w.name.clone(),
                    selector: w.selector.clone(),
                    pids: seen.into_iter().collect(),
                    started_ns: Some(w.started.saturating_duration_since(self.started).as_nanos() as u64),
                    run_time_ns: (w.ended.unwrap_or_else(Instant::now) - w.started).as_nanos() as u64,
                    exit: w.exit.clone(),
                    irq_filtered,
                }
            })
            .collect();

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
                started_unix_ns: self.started_unix_ns,
                ended_unix_ns: self.started_unix_ns + elapsed.as_nanos() as u64,
                end_reason,
                kallsyms_all,
                workloads,
                counters,
                files: vec![],
                label: None,
                runqueues,
                sites_from: None,
                recorder_cost,
                document_sha256: None,
            },
            records,
            stacks,
            symbols: snapshot,
            sites: vec![],
            places,
            names: vec![],
            unnamed: vec![],
            held_waits,
        })
    }

    /// The waits by holder, as the programs attributed them (where waits are timed).
    fn held_waits(&self, pids: &BTreeMap<u32, BTreeSet<u32>>) -> Result<Vec<HeldWait>, RecordError> {
        let Some(map) = self.kernel.maps.holders else { return Ok(vec![]) };
        let workload_of = |tgid: u32| pids.iter().find(|(_, set)| set.contains(&tgid)).map(|(&w, _)| w);
        let mut waits = vec![];
        for (key, value) in hash_entries(map)? {
            waits.push(abi::held_wait(&key, &value, workload_of));
        }
        waits.sort_by_key(|w| (w.waiter, w.holder, w.lock_addr));
        Ok(waits)
    }
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
