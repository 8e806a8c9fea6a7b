//! The trace data model, shared by the recorder, the analysis and the report.

use serde::{Deserialize, Serialize};

/// The one spelling of each value of a vocabulary enum, used in Parquet,
/// JSON, CSV and reports alike; `parse` also accepts older spellings.
macro_rules! spelled {
    ($ty:ident { $($variant:ident => $name:literal $(| $old:literal)*,)* }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant,)*];

            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)*
                }
            }

            pub fn parse(text: &str) -> Option<$ty> {
                match text {
                    $($name $(| $old)* => Some($ty::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

/// How the locks were observed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only contended acquisitions (lock:contention_begin/end), with wait time.
    Contention,
    /// Every acquisition (lock primitives probed), with hold time.
    Acquire,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Contention => "contention",
            Mode::Acquire => "acquire",
        })
    }
}

/// Why a recording stopped.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EndReason {
    Duration,
    WorkloadsExited,
    Interrupted,
}

/// How a workload's processes were chosen.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Selector {
    /// Launched by lockscope; its whole process tree is followed.
    Run { command: String },
    /// An existing process and its descendants.
    Pid { pid: u32 },
    /// Every process in a cgroup (and its descendants).
    Cgroup { path: String },
    /// A built-in workload started by lockscope on an isolation platform;
    /// the host processes that stand for it (container init, gVisor sandbox
    /// and gofer, VMM) and their descendants.
    Platform { platform: String, workload: String },
    /// A container another runtime runs (Podman, Docker), found by name: every
    /// process of its cgroup.
    Container { runtime: String, container: String, cgroup: String },
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Run { command } => write!(f, "run: {command}"),
            Selector::Pid { pid } => write!(f, "pid: {pid}"),
            Selector::Cgroup { path } => write!(f, "cgroup: {path}"),
            Selector::Platform { platform, workload } => write!(f, "{platform}: {workload}"),
            Selector::Container { runtime, container, .. } => write!(f, "{runtime} container: {container}"),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Workload {
    /// Identifier used in the lock records (1-based).
    pub id: u32,
    pub name: String,
    pub selector: Selector,
    /// Every process (tgid) attributed to the workload during the recording.
    pub pids: Vec<u32>,
    /// When the workload started, in nanoseconds since the recording did;
    /// None in traces written before lockscope kept it.
    #[serde(default)]
    pub started_ns: Option<u64>,
    /// The workload's own execution time within the recording, in nanoseconds:
    /// the denominator of its access rates.
    pub run_time_ns: u64,
    /// How a launched workload ended, when it ended during the recording.
    pub exit: Option<String>,
    /// Acquisitions recognised as made in interrupt context while this
    /// workload was current (left out of the analysis by default).
    pub irq_filtered: u64,
}

impl Workload {
    pub fn run_time_secs(&self) -> f64 {
        self.run_time_ns as f64 / 1e9
    }

    /// The share of this workload's run time during which `other` ran too
    /// (1 where the trace does not say when they ran).
    pub fn share_alongside(&self, other: &Workload) -> f64 {
        let (Some(a), Some(b)) = (self.started_ns, other.started_ns) else { return 1.0 };
        if self.run_time_ns == 0 {
            return 0.0;
        }
        let together = (a + self.run_time_ns).min(b + other.run_time_ns).saturating_sub(a.max(b));
        together as f64 / self.run_time_ns as f64
    }
}

/// Defines [`Counters`] and its list of names from one list of fields.
macro_rules! counters {
    ($($(#[$attr:meta])* $name:ident,)*) => {
        /// Everything the recorder saw but could not record, or chose to leave out.
        #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
        #[serde(default)] // a counter an older trace lacks was zero
        pub struct Counters {
            $($(#[$attr])* pub $name: u64,)*
        }

        impl Counters {
            /// Every counter with its name, in a stable order, for display.
            pub fn named(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }
        }
    };
}

counters! {
    /// Lock events seen for the selected workloads.
    events,
    /// Acquisitions recognised (by stack) as made in interrupt context; kept
    /// in the trace, left out of the analysis unless asked for.
    irq_filtered,
    /// Records lost because the aggregation map was full.
    map_full,
    /// Records lost because the aggregation map was busy on that CPU.
    map_busy,
    /// Stacks not stored because the stack store was full (the record is
    /// kept, stack id -1). Traces of earlier versions counted stack-map
    /// bucket collisions here.
    #[serde(alias = "stack_collisions")]
    stacks_full,
    /// Stacks not stored for another reason (fault, map busy).
    stack_errors,
    /// Waits not timed because per-task state could not be had.
    state_busy,
    /// Waits not timed because too many were in flight on one task.
    nesting_overflow,
    /// Ends of waits whose beginning was not seen (began before attach).
    unmatched_end,
    /// Child processes not followed because the tracking map was full.
    track_full,
    /// Acquire-mode runs skipped because a lockscope program was already
    /// running on the CPU (its map helpers take locks of their own).
    reentered,
    /// Lock addresses that started a new generation because the slab object
    /// holding them was freed.
    freed_locks,
    /// Bulk-freed objects whose slab cache could not be found, so the locks
    /// inside them kept their generation (acquire mode).
    unsized_frees,
    /// Program runs the kernel skipped because a BPF program was already running on the CPU.
    recursion_misses,
    /// Locks whose place in memory was not kept (the place maps were full).
    places_full,
    /// Waits not attributed to their lock's holder (the holder map was full).
    holders_full,
    /// Spinlock waits whose holder went unnamed because the lock was free
    /// at either read of its word (released before the other CPUs were read).
    holder_released,
    /// Spinlock waits whose holder went unnamed because another CPU was
    /// serving an interrupt, or had not been seen yet.
    holder_unseen,
    /// Spinlock waits whose holder went unnamed because the other CPUs ran
    /// the idle task, two processes, or none that could hold a spinlock.
    holder_ambiguous,
}

impl Counters {
    /// Events of the workloads that should have been recorded but were not.
    pub fn lost(&self) -> u64 {
        self.map_full + self.map_busy + self.state_busy + self.nesting_overflow + self.track_full
    }

    /// Program runs skipped because a lockscope program was already running on
    /// the CPU: mostly the locks lockscope's own map helpers take, but also
    /// interrupts arriving meanwhile. Not attributable, so shown apart.
    pub fn skipped(&self) -> u64 {
        self.reentered + self.recursion_misses
    }
}

/// The document stored as `trace.json` beside the tables.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TraceMeta {
    /// Always `lockscope-trace`.
    pub format: String,
    /// Format version; readers refuse newer versions than they know.
    pub version: u32,
    pub lockscope_version: String,
    pub kernel_release: String,
    pub hostname: String,
    pub mode: Mode,
    /// Kernel hook used: `tp_btf`, `tracepoint` or `fentry`.
    pub hook: String,
    /// The kernel functions or tracepoints the recorder was attached to.
    pub attached: Vec<String>,
    /// What a reader should know about how the trace was recorded.
    pub notes: Vec<String>,
    pub started_unix_ns: u64,
    pub ended_unix_ns: u64,
    pub end_reason: EndReason,
    /// Whether kallsyms listed data symbols (CONFIG_KALLSYMS_ALL), so global locks can be named.
    pub kallsyms_all: bool,
    pub workloads: Vec<Workload>,
    pub counters: Counters,
    /// The tables and their sizes, to detect truncation.
    pub files: Vec<TraceFile>,
    /// What the experiment calls the workload (e.g. `mem-8k`), set by
    /// `record --label`; `compare` and `study` use it as the row name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Where each CPU's `runqueues` lies (0: not seen), as the recorder
    /// noted it: with BTF, where each CPU's per-CPU area begins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runqueues: Vec<u64>,
    /// The version of the kernel source the sites were read from (`6.12`)
    /// where it is not the traced kernel's: its names are inferences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sites_from: Option<String>,
    /// What the recorder's own programs cost, as the kernel timed them
    /// (`record --time-programs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorder_cost: Option<RecorderCost>,
    /// SHA-256 of this document as written, with this value read as 64
    /// zeros (format 2 on): damage to `trace.json` itself is found too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_sha256: Option<String>,
}

/// The recorder's BPF programs, as the kernel's BPF statistics timed them
/// over the recording: every run, of every program, whatever it recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecorderCost {
    /// Summed over `programs` (traces recorded before the breakdown have only the sums).
    pub program_runs: u64,
    pub run_time_ns: u64,
    /// Each program that ran, dearest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub programs: Vec<ProgramCost>,
}

/// One of the recorder's programs (its name in the BPF object, e.g.
/// `lks_a__raw_spin_lock`), as the kernel timed it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramCost {
    pub name: String,
    pub runs: u64,
    pub run_time_ns: u64,
}

impl RecorderCost {
    /// The cost of these programs: those that ran, dearest first, and their sums.
    pub fn of(programs: impl IntoIterator<Item = ProgramCost>) -> RecorderCost {
        let mut programs: Vec<ProgramCost> = programs.into_iter().filter(|p| p.runs > 0).collect();
        programs.sort_by(|a, b| b.run_time_ns.cmp(&a.run_time_ns).then_with(|| a.name.cmp(&b.name)));
        RecorderCost {
            program_runs: programs.iter().map(|p| p.runs).sum(),
            run_time_ns: programs.iter().map(|p| p.run_time_ns).sum(),
            programs,
        }
    }
}

impl TraceMeta {
    pub fn duration_ns(&self) -> u64 {
        self.ended_unix_ns.saturating_sub(self.started_unix_ns)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TraceFile {
    pub name: String,
    pub bytes: u64,
    pub rows: u64,
    /// SHA-256 of the file, hex (format 2 on; `sha256sum` checks it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Who held a lock a workload waited for, as the lock word named its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Holder {
    /// A process of the workload with this id (it may be the waiter's own).
    Workload(u32),
    /// A process outside every recorded workload (a kernel thread, another program).
    Other { tgid: u32 },
    /// Not told: an rwsem held by readers, a lock released before its owner
    /// was read, a spinlock while an interrupt, the idle task or two
    /// processes ran on the other CPUs (or on a kernel whose BTF does not
    /// locate the preempt count).
    Unknown,
}

/// The waits of one workload on one lock while one holder held it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldWait {
    /// The waiting workload's id.
    pub waiter: u32,
    pub holder: Holder,
    pub lock_addr: u64,
    pub count: u64,
    pub wait_total_ns: u64,
    /// Waited while the workload's CPU served an interrupt: the interrupt's
    /// wait, left out of the analysis as interrupt-context acquisitions are.
    pub in_interrupt: bool,
}

/// One aggregate from the kernel: a lock as seen by one process of one workload
/// from one kernel stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockRecord {
    pub workload: u32,
    pub tgid: u32,
    pub lock_addr: u64,
    /// Incremented when the address is re-initialised as a new lock (acquire mode).
    pub generation: u32,
    /// Kernel lock flags (`LCB_F_*` of the contention tracepoints).
    pub flags: u32,
    /// Index into the stacks table; -1 when the stack was lost.
    pub stack_id: i32,
    pub count: u64,
    pub wait_total_ns: u64,
    pub wait_max_ns: u64,
    pub hold_total_ns: u64,
    pub hold_max_ns: u64,
    /// Trylocks that failed here (acquire mode); not counted in `count`.
    pub failed_trylocks: u64,
    /// Kernel monotonic time (ns) of the first acquisition (acquire mode) or
    /// contention (contention mode) recorded for this aggregate.
    pub first_ns: u64,
    /// Taken while serving an interrupt (recognised from the stack).
    pub in_interrupt: bool,
}

impl LockRecord {
    pub fn kind(&self) -> LockKind {
        LockKind::from_flags(self.flags)
    }
}

/// A kernel stack, innermost frame first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stack {
    pub id: i32,
    pub frames: Vec<u64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SymbolKind {
    Text,
    Data,
}

/// A kernel symbol from the kallsyms snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    pub addr: u64,
    /// Bytes to the next symbol.
    pub size: u64,
    pub name: String,
    pub module: Option<String>,
    pub kind: SymbolKind,
}

/// The slab cache a lock was found in, with the geometry that places the
/// lock inside its object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlabCache {
    pub name: String,
    /// An object's slot: the object with its padding and debug fields.
    pub slot_size: u32,
    pub object_size: u32,
    /// Debug red zone before each object.
    pub red_left_pad: u32,
    /// Slabs take `PAGE_SIZE << order` bytes, naturally aligned.
    pub order: u32,
    /// The order of slabs allocated when memory was short.
    pub min_order: u32,
}

/// What the recorder needs to tell where locks live: said wherever a trace
/// has no places.
pub const PLACES_NEED: &str = "the bpf_get_kmem_cache kfunc (kernel 6.13 or later, tp_btf or trampolines), \
     or kallsyms' page_offset_base, vmemmap_base and max_pfn on a kernel that marks slab pages with PG_slab (up to 6.9) \
     or the page type PGTY_slab (6.12 on)";

/// Where a lock lives, as the recorder found it the first time it saw the lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockPlace {
    pub lock_addr: u64,
    /// The lock's generation ([`LockRecord::generation`]): a freed object's
    /// address may hold another cache's object later.
    pub generation: u32,
    /// None: in no slab object (a global, a per-CPU area, a page of its own).
    pub slab: Option<SlabCache>,
    /// Where its slab begins, where the recorder read it from the lock's
    /// page: the lock's offset in its object is then exact.
    pub slab_start: Option<u64>,
}

/// How a lock's name was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NameSource {
    /// Its slab cache and offset, through the recording kernel's BTF.
    Slab,
    /// A per-CPU area, through BTF.
    Percpu,
    /// A data symbol in kallsyms.
    Kallsyms,
    /// The static analyzer, from the call site in the kernel source.
    Source,
    /// The call site's line, from the kernel's debug info.
    Debuginfo,
}

spelled!(NameSource {
    Slab => "slab",
    Percpu => "percpu",
    Kallsyms => "kallsyms",
    Source => "source",
    Debuginfo => "debuginfo",
});

/// How sure a name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Several objects could hold it; the first candidate is the likeliest.
    Ambiguous,
    /// One candidate was left once everything known was applied.
    Inferred,
    /// Named by the kernel itself (a cache named for its type, a symbol).
    Exact,
}

spelled!(Confidence {
    Ambiguous => "ambiguous",
    Inferred => "inferred",
    Exact => "exact",
});

/// A lock's name from one source: a member of an object, or a global.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockName {
    pub lock_addr: u64,
    /// The generation of the lock at `lock_addr` this names.
    #[serde(default)]
    pub generation: u32,
    pub by: NameSource,
    /// The struct holding the lock (member names).
    pub object: Option<String>,
    /// Its field in `object`, dotted through embedded structs (`vfs_inode.i_data.i_private_lock`).
    pub member: Option<String>,
    /// The variable (global names).
    pub global: Option<String>,
    pub confidence: Confidence,
    /// Other objects that could hold it (ambiguous names), `struct.member` each.
    pub alternatives: Vec<String>,
    /// The same lock spelled from each struct it is embedded in
    /// (`inode.i_data.i_private_lock` for `bdev_inode.vfs_inode.i_data.i_private_lock`):
    /// what a source-level name of it may be.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spellings: Vec<String>,
}

impl LockName {
    /// `bdev_inode.vfs_inode.i_data.i_private_lock`, `inode_hash_lock`.
    pub fn label(&self) -> Option<String> {
        match (&self.object, &self.member, &self.global) {
            (Some(o), Some(m), _) => Some(format!("{o}.{m}")),
            (_, _, Some(g)) => Some(g.clone()),
            _ => None,
        }
    }

    /// Whether another source's name of the lock (the static analyzer's
    /// `inode.i_data.i_private_lock` or `mem_hotplug_lock`) is this one: its
    /// label or a spelling of it, array elements aside (the source says
    /// `blockgroup_lock.locks.lock` where the address says `locks[0].lock`),
    /// or the variable a `symbol+offset` (`kallsyms::variable_at`) lies in. None where this name cannot
    /// tell: a variable BTF gives no type for, against a member's name.
    pub fn agrees_with(&self, other: &str) -> Option<bool> {
        let other = without_indexes(other);
        let symbol = self.global.as_deref().map(|g| g.split_once('+').map_or(g, |(symbol, _)| symbol));
        let same = self.label().into_iter().chain(self.spellings.iter().cloned()).any(|name| without_indexes(&name) == other)
            || symbol.is_some_and(|s| other == s || other.strip_prefix(s).is_some_and(|rest| rest.starts_with('.')));
        let untyped = self.by == NameSource::Kallsyms && self.member.is_none() && other.contains('.');
        (same || !untyped).then_some(same)
    }
}

/// A member path without its array indexes (`locks[0].lock` → `locks.lock`).
fn without_indexes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// A lock naming could not name, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnnamedLock {
    pub lock_addr: u64,
    #[serde(default)]
    pub generation: u32,
    pub reason: String,
}

/// A whole trace in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub meta: TraceMeta,
    pub records: Vec<LockRecord>,
    pub stacks: Vec<Stack>,
    pub symbols: Vec<Symbol>,
    /// Where each stack's lock lives in the source: empty until `lockscope
    /// resolve` has run over the trace.
    pub sites: Vec<StackSite>,
    /// Where each lock lives in memory, where the recorder could tell.
    pub places: Vec<LockPlace>,
    /// Names given at run time (from places, BTF, kallsyms).
    pub names: Vec<LockName>,
    /// Locks with a place that naming could not name.
    pub unnamed: Vec<UnnamedLock>,
    /// Waits by the holder of the lock waited for (where waits are timed: contention mode, and acquire mode on 5.19+).
    pub held_waits: Vec<HeldWait>,
}

impl Trace {
    /// The locks (address, generation) the recorder placed in no slab object:
    /// a global, a per-CPU variable, a page of its own.
    pub fn outside_slabs(&self) -> std::collections::HashSet<(u64, u32)> {
        self.places.iter().filter(|p| p.slab.is_none()).map(|p| (p.lock_addr, p.generation)).collect()
    }
}

/// Where a lock lives, as the static analyzer (or a run-time naming source)
/// found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// A global variable.
    Global,
    /// A member of a kernel object (struct or union).
    Member,
    /// A variable local to a function (static or on the stack).
    Local,
    /// Not found.
    Unknown,
}

/// How a stack's site was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteMethod {
    /// The call site's line, from the kernel's debug info.
    Line,
    /// The call site's own acquisitions of the recorded kind.
    Function,
    /// In a function the call site calls (stacks cut short by inlining).
    Completed,
    /// A lock wrapper's lock, named where its caller calls it.
    Caller,
    /// The subsystem only, from the function's name in another kernel's source.
    #[serde(alias = "function name")]
    FunctionName,
    /// A lock in static data that the call site's function takes, by another
    /// kernel version's source ([`TraceMeta::sites_from`]): an inference, as
    /// the function may have changed since.
    OtherVersion,
    Unresolved,
}

spelled!(Scope {
    Global => "global",
    Member => "member",
    Local => "local",
    Unknown => "unknown",
});

spelled!(SiteMethod {
    Line => "line",
    Function => "function",
    Completed => "completed",
    Caller => "caller",
    FunctionName => "function_name" | "function name",
    OtherVersion => "other_version",
    Unresolved => "unresolved",
});

/// A stack resolved against the kernel source: the code that took the lock
/// and the lock itself (a global, or a member of a kernel object).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackSite {
    pub stack_id: i32,
    /// The function that took the lock (the stack's call site).
    pub function: String,
    /// Where the acquisition is written, when one was chosen.
    pub file: Option<String>,
    pub line: Option<u32>,
    pub scope: Scope,
    /// The struct or union holding the lock (member scope).
    pub object: Option<String>,
    /// The lock's field in `object`, dotted where nested.
    pub member: Option<String>,
    /// The variable (global or local scope).
    pub variable: Option<String>,
    pub lock_type: Option<String>,
    /// Top-level source directory of `file`: fs, mm, kernel, net, …
    pub subsystem: Option<String>,
    pub method: SiteMethod,
    /// Distinct locks of the recorded kind the function could have taken.
    pub candidates: u32,
    pub reason: Option<String>,
}

impl StackSite {
    /// Where the acquisition is written, when known.
    pub fn source(&self) -> Option<SourceLine> {
        Some(SourceLine { file: self.file.clone()?, line: self.line? })
    }

    /// `fs_struct.lock`, `tasklist_lock`: the lock's name for reports.
    pub fn lock_name(&self) -> Option<String> {
        match self.scope {
            Scope::Member => Some(format!("{}.{}", self.object.as_deref()?, self.member.as_deref()?)),
            Scope::Global | Scope::Local => self.variable.clone(),
            Scope::Unknown => None,
        }
    }
}

/// A line of the kernel source, shown (and serialized) as `fs/inode.c:1702`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceLine {
    /// Relative to the tree's root.
    pub file: String,
    pub line: u32,
}

impl std::fmt::Display for SourceLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

impl Serialize for SourceLine {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A kernel stack frame, symbolized: shown as `function+0x1f [module]`,
/// or as its address where no symbol covers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub addr: u64,
    /// The function and the offset of `addr` in it.
    pub function: Option<(String, u64)>,
    pub module: Option<String>,
}

impl Frame {
    /// The function's name, or the address where none is known.
    pub fn function_name(&self) -> String {
        match &self.function {
            Some((name, _)) => name.clone(),
            None => format!("{:#x}", self.addr),
        }
    }
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.function {
            Some((name, offset)) => write!(f, "{name}+{offset:#x}")?,
            None => write!(f, "{:#x}", self.addr)?,
        }
        match &self.module {
            Some(m) => write!(f, " [{m}]"),
            None => Ok(()),
        }
    }
}

impl Serialize for Frame {
    /// As shown (`iput+0x4`): what reports and their readers use.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Lock flags from the kernel's `lock:contention_begin` tracepoint (LCB_F_*).
pub mod lock_flags {
    pub const SPIN: u32 = 1 << 0;
    pub const READ: u32 = 1 << 1;
    pub const WRITE: u32 = 1 << 2;
    pub const RT: u32 = 1 << 3;
    pub const PERCPU: u32 = 1 << 4;
    pub const MUTEX: u32 = 1 << 5;
}

/// The kind of lock, as far as the kernel's flags tell.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum LockKind {
    Spinlock,
    RwlockRead,
    RwlockWrite,
    Mutex,
    RtMutex,
    RwsemRead,
    RwsemWrite,
    PercpuRwsemRead,
    PercpuRwsemWrite,
    Semaphore,
}

impl LockKind {
    pub fn from_flags(flags: u32) -> LockKind {
        use lock_flags::*;
        let write = flags & WRITE != 0;
        if flags & MUTEX != 0 {
            LockKind::Mutex
        } else if flags & RT != 0 {
            LockKind::RtMutex
        } else if flags & PERCPU != 0 {
            if write {
                LockKind::PercpuRwsemWrite
            } else {
                LockKind::PercpuRwsemRead
            }
        } else if flags & (READ | WRITE) != 0 {
            match (flags & SPIN != 0, write) {
                (true, false) => LockKind::RwlockRead,
                (true, true) => LockKind::RwlockWrite,
                (false, false) => LockKind::RwsemRead,
                (false, true) => LockKind::RwsemWrite,
            }
        } else if flags & SPIN != 0 {
            LockKind::Spinlock
        } else {
            // down() on a plain semaphore reports no flags.
            LockKind::Semaphore
        }
    }
}

spelled!(LockKind {
    Spinlock => "spinlock",
    RwlockRead => "rwlock_read" | "rwlock:read",
    RwlockWrite => "rwlock_write" | "rwlock:write",
    Mutex => "mutex",
    RtMutex => "rt_mutex",
    RwsemRead => "rwsem_read" | "rwsem:read",
    RwsemWrite => "rwsem_write" | "rwsem:write",
    PercpuRwsemRead => "percpu_rwsem_read" | "percpu_rwsem:read",
    PercpuRwsemWrite => "percpu_rwsem_write" | "percpu_rwsem:write",
    Semaphore => "semaphore",
});

#[cfg(test)]
mod tests {
    use super::lock_flags::*;
    use super::*;

    #[test]
    fn a_workload_s_time_alongside_another_is_the_overlap_of_their_runs() {
        let w = |started_s: Option<u64>, secs: u64| Workload {
            id: 1,
            name: "w".into(),
            selector: Selector::Pid { pid: 1 },
            pids: vec![],
            started_ns: started_s.map(|s| s * 1_000_000_000),
            run_time_ns: secs * 1_000_000_000,
            exit: None,
            irq_filtered: 0,
        };
        let (early, late) = (w(Some(0), 10), w(Some(6), 2));
        assert_eq!((early.share_alongside(&late), late.share_alongside(&early)), (0.2, 1.0));
        assert_eq!(early.share_alongside(&w(Some(10), 5)), 0.0, "one began as the other ended");
        assert_eq!(early.share_alongside(&w(None, 5)), 1.0, "an older trace says nothing: together throughout");
    }

    #[test]
    fn kinds_follow_the_kernel_flags() {
        assert_eq!(LockKind::from_flags(SPIN), LockKind::Spinlock);
        assert_eq!(LockKind::from_flags(SPIN | READ), LockKind::RwlockRead);
        assert_eq!(LockKind::from_flags(SPIN | WRITE), LockKind::RwlockWrite);
        assert_eq!(LockKind::from_flags(MUTEX | SPIN), LockKind::Mutex);
        assert_eq!(LockKind::from_flags(MUTEX), LockKind::Mutex);
        assert_eq!(LockKind::from_flags(READ), LockKind::RwsemRead);
        assert_eq!(LockKind::from_flags(WRITE), LockKind::RwsemWrite);
        assert_eq!(LockKind::from_flags(PERCPU | WRITE), LockKind::PercpuRwsemWrite);
        assert_eq!(LockKind::from_flags(RT), LockKind::RtMutex);
        assert_eq!(LockKind::from_flags(0), LockKind::Semaphore);
    }

    /// Each value has one spelling: its name is its JSON (and so its CSV and
    /// Parquet) form, and parses back; older spellings still parse.
    fn one_spelling<T>(all: &[T], name: fn(&T) -> &'static str, parse: fn(&str) -> Option<T>)
    where
        T: Serialize + PartialEq + std::fmt::Debug,
    {
        for v in all {
            assert_eq!(serde_json::to_value(v).unwrap(), name(v), "{v:?}");
            assert_eq!(parse(name(v)).as_ref(), Some(v));
        }
    }

    #[test]
    fn vocabulary_has_one_spelling() {
        one_spelling(LockKind::ALL, |k| k.name(), LockKind::parse);
        one_spelling(Scope::ALL, |k| k.name(), Scope::parse);
        one_spelling(SiteMethod::ALL, |k| k.name(), SiteMethod::parse);
        assert_eq!(LockKind::parse("rwsem:read"), Some(LockKind::RwsemRead), "version 1 traces' spelling");
        assert_eq!(SiteMethod::parse("function name"), Some(SiteMethod::FunctionName), "version 1 traces' spelling");
        assert_eq!(LockKind::parse("rwsemread"), None);
    }

    #[test]
    fn frames_show_function_offset_and_module() {
        let frame = |function: Option<(&str, u64)>, module: Option<&str>| Frame {
            addr: 0xffffffffc0000004,
            function: function.map(|(f, o)| (f.to_owned(), o)),
            module: module.map(str::to_owned),
        };
        assert_eq!(frame(Some(("ext4_create", 4)), Some("ext4")).to_string(), "ext4_create+0x4 [ext4]");
        assert_eq!(frame(Some(("iput", 0x1f)), None).to_string(), "iput+0x1f");
        assert_eq!(frame(None, None).to_string(), "0xffffffffc0000004");
        assert_eq!(frame(None, None).function_name(), "0xffffffffc0000004");
        assert_eq!(serde_json::to_value(frame(Some(("iput", 4)), None)).unwrap(), "iput+0x4");
    }

    #[test]
    fn names_agree_across_spellings_array_elements_and_variables() {
        let name = |by, object: Option<&str>, member: Option<&str>, global: Option<&str>, spellings: &[&str]| LockName {
            lock_addr: 0,
            generation: 0,
            by,
            object: object.map(str::to_owned),
            member: member.map(str::to_owned),
            global: global.map(str::to_owned),
            confidence: Confidence::Exact,
            alternatives: vec![],
            spellings: spellings.iter().map(|s| s.to_string()).collect(),
        };
        let journal = name(NameSource::Slab, Some("journal_s"), Some("j_state_lock"), None, &["journal_t.j_state_lock"]);
        assert_eq!(journal.agrees_with("journal_t.j_state_lock"), Some(true), "a typedef's spelling");
        assert_eq!(journal.agrees_with("journal_t.j_list_lock"), Some(false));
        let group = name(NameSource::Slab, Some("blockgroup_lock"), Some("locks[0].lock"), None, &[]);
        assert_eq!(group.agrees_with("blockgroup_lock.locks.lock"), Some(true), "the source names no element");
        let hash = name(NameSource::Kallsyms, None, None, Some("inode_hash_lock"), &[]);
        assert_eq!(hash.agrees_with("inode_hash_lock"), Some(true));
        assert_eq!(hash.agrees_with("sb_lock"), Some(false));
        assert_eq!(hash.agrees_with("uart_port.lock"), None, "an untyped variable cannot say which member");
        let inside = name(NameSource::Kallsyms, None, None, Some("mem_hotplug_lock+0x8"), &[]);
        assert_eq!(inside.agrees_with("mem_hotplug_lock.rw_sem"), Some(true));
    }
}
