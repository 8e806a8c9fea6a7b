//! Shared and private locks, access rates and call sites (paper section 5.2).
//!
//! A lock is identified by its address and generation (a re-initialised
//! address is a new lock). It is *shared* when two or more workloads acquired
//! it, *private* when one did. A workload's access rate for a lock is its
//! acquisitions divided by the workload's own execution time.

use std::collections::{BTreeMap, HashMap};

use lockscope_trace::{
    Confidence, Counters, Frame, LockKind, LockName, Mode, NameSource, RecorderCost, Scope, SiteMethod, SourceLine, StackSite, SymbolTable,
    Trace, PLACES_NEED,
};
use serde::Serialize;

use lockscope_trace::frames;
use lockscope_trace::kallsyms::{in_kernel_image, variable_at};

#[derive(Clone, Debug, Serialize)]
pub struct Analysis {
    pub mode: Mode,
    pub kernel_release: String,
    pub duration_secs: f64,
    pub workloads: Vec<WorkloadSummary>,
    /// Every lock, shared ones first, then by acquisitions.
    pub locks: Vec<LockSummary>,
    pub shared_locks: usize,
    pub counters: Counters,
    /// What the recorder's own programs cost (`record --time-programs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorder_cost: Option<RecorderCost>,
    /// Whether acquisitions made in interrupt context are included.
    pub includes_interrupt: bool,
    /// Whether global locks could be named from kallsyms.
    pub kallsyms_all: bool,
    /// The recorder's notes on how the trace was made.
    pub notes: Vec<String>,
    /// Each workload's waits by the holder of the lock (where waits are timed: contention mode, and acquire mode on 5.19+).
    pub waits_by_holder: Vec<crate::holders::HolderWaits>,
    /// Each workload's exposure to each other (see [`crate::score`]).
    pub exposures: Vec<crate::score::Exposure>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WorkloadSummary {
    pub id: u32,
    pub name: String,
    pub selector: String,
    pub pids: Vec<u32>,
    pub run_time_secs: f64,
    pub exit: Option<String>,
    pub acquisitions: u64,
    pub locks: usize,
    pub private_locks: usize,
    pub shared_locks: usize,
    pub irq_filtered: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LockSummary {
    pub addr: u64,
    pub generation: u32,
    /// `global+offset` when the lock lies in a kernel global kallsyms lists.
    pub global: Option<String>,
    pub kind: LockKind,
    /// The lock in the source (`fs_struct.lock`, `tasklist_lock`), from a
    /// resolved trace: the name most of its acquisitions' stacks resolve to.
    pub object: Option<String>,
    /// Where the lock lives, with `object`.
    pub scope: Option<Scope>,
    /// Its names from each source that gave one, with how they were obtained.
    pub names: Vec<LockName>,
    /// Why it has no name, when it has none.
    pub why_unnamed: Option<String>,
    /// Where the static analyzer and run-time naming both named it, whether
    /// they agree (one of the run-time name's spellings is the source's): a
    /// disagreement is worth a look.
    pub names_agree: Option<bool>,
    /// The kernel subsystem of the code that takes it (fs, mm, kernel, …).
    pub subsystem: Option<String>,
    pub shared: bool,
    pub acquisitions: u64,
    pub uses: Vec<LockUse>,
    /// The most frequent call sites, most frequent first.
    pub call_sites: Vec<CallSite>,
}

impl LockSummary {
    /// The lock as a person reads it: the global's name; else its source
    /// name with its address (one per object instance); else its address.
    pub fn label(&self) -> String {
        let addr = match self.generation {
            0 => format!("{:#x}", self.addr),
            g => format!("{:#x}#{g}", self.addr),
        };
        match (&self.global, &self.object) {
            (Some(g), _) => g.clone(),
            (None, Some(o)) if self.scope == Some(Scope::Global) => o.clone(),
            (None, Some(o)) => format!("{o} @{addr}"),
            (None, None) => addr,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LockUse {
    pub workload: u32,
    pub workload_name: String,
    pub acquisitions: u64,
    /// Acquisitions per second of the workload's execution time.
    pub rate_per_sec: f64,
    pub wait_total_ns: u64,
    pub wait_max_ns: u64,
    pub hold_total_ns: u64,
    pub hold_max_ns: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CallSite {
    pub acquisitions: u64,
    /// First frame outside the tracer and the lock implementation.
    pub site: Option<Frame>,
    /// The acquisition's line, from a resolved trace.
    pub source: Option<SourceLine>,
    /// Symbolized frames, innermost first, tracer frames removed.
    pub frames: Vec<Frame>,
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Call sites kept per lock.
    pub top_sites: usize,
    /// Count acquisitions made in interrupt context (left out by default, as
    /// the interrupted process did not cause them).
    pub include_interrupt: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { top_sites: 10, include_interrupt: false }
    }
}

/// Why a lock (address and generation) of the trace has no name, from what
/// naming found of it.
fn why_unnamed(trace: &Trace) -> impl Fn((u64, u32)) -> String + '_ {
    let unnamed: HashMap<(u64, u32), &str> = trace.unnamed.iter().map(|u| ((u.lock_addr, u.generation), u.reason.as_str())).collect();
    let in_slab: HashMap<(u64, u32), bool> = trace.places.iter().map(|p| ((p.lock_addr, p.generation), p.slab.is_some())).collect();
    move |lock| match (unnamed.get(&lock), in_slab.get(&lock)) {
        (Some(reason), _) => (*reason).to_owned(),
        (None, Some(false)) if in_kernel_image(lock.0) => "a global in the kernel image: named where kallsyms lists data \
                                                           symbols, else from its call site in the kernel source"
            .to_owned(),
        (None, Some(false)) => "in no slab object or per-CPU variable (a page, vmalloc or stack allocation): named only \
                                from its call site where the kernel source matches"
            .to_owned(),
        (None, Some(true)) => "its slab cache's types were not read (no BTF where it was recorded)".to_owned(),
        (None, None) if trace.places.is_empty() => {
            format!("the recorder could not tell where it lives (run-time naming needs {PLACES_NEED})")
        }
        (None, None) => "its place was not noted (the recorder's place maps were full)".to_owned(),
    }
}

/// The static analyzer's name of a lock, as one of its names.
fn source_name(site: &StackSite, lock_addr: u64, generation: u32) -> Option<LockName> {
    site.lock_name()?;
    let member = site.scope == Scope::Member;
    let exact = site.candidates <= 1 && site.method != SiteMethod::OtherVersion;
    Some(LockName {
        lock_addr,
        generation,
        by: if site.method == SiteMethod::Line { NameSource::Debuginfo } else { NameSource::Source },
        object: site.object.clone().filter(|_| member),
        member: site.member.clone().filter(|_| member),
        global: site.variable.clone().filter(|_| !member),
        confidence: if exact { Confidence::Exact } else { Confidence::Inferred },
        alternatives: vec![],
        spellings: vec![],
    })
}

/// A run-time name as reports show it: ambiguous ones say how many others fit.
fn runtime_label(name: &LockName) -> Option<String> {
    let label = name.label()?;
    Some(match (name.confidence, name.alternatives.len()) {
        (Confidence::Ambiguous, n) if n > 0 => format!("{label} (or {n} other{})", if n == 1 { "" } else { "s" }),
        _ => label,
    })
}

/// Of a lock's stacks (with acquisitions, most first), the resolved site
/// that most acquisitions point to.
fn most_named<'a>(stacks: &[(i32, u64)], sites: &HashMap<i32, &'a StackSite>) -> Option<&'a StackSite> {
    let mut weight: HashMap<String, (u64, &StackSite)> = HashMap::new();
    for (id, n) in stacks {
        if let Some(site) = sites.get(id).filter(|s| s.lock_name().is_some()) {
            weight.entry(site.lock_name().unwrap()).or_insert((0, site)).0 += n;
        }
    }
    weight.into_values().max_by(|a, b| a.0.cmp(&b.0).then(b.1.stack_id.cmp(&a.1.stack_id))).map(|(_, s)| s)
}

pub fn analyze(trace: &Trace, options: &Options) -> Analysis {
    let top_sites = options.top_sites;
    let symbols = SymbolTable::from_snapshot(trace.symbols.clone());
    let stacks: HashMap<i32, Vec<Frame>> = trace.stacks.iter().map(|s| (s.id, frames::without_tracer(symbols.frames(&s.frames)))).collect();
    // Without KALLSYMS_ALL the few data symbols left are section markers that
    // would swallow unrelated addresses.
    let named_globals = trace.meta.kallsyms_all;
    let sites_by_stack: HashMap<i32, &StackSite> = trace.sites.iter().map(|s| (s.stack_id, s)).collect();
    let names_by_lock: HashMap<(u64, u32), &LockName> = trace.names.iter().map(|n| ((n.lock_addr, n.generation), n)).collect();
    let outside_slabs = trace.outside_slabs();
    let why_unnamed = why_unnamed(trace);
    let workload_names: HashMap<u32, &str> = trace.meta.workloads.iter().map(|w| (w.id, w.name.as_str())).collect();
    let run_secs: HashMap<u32, f64> = trace.meta.workloads.iter().map(|w| (w.id, w.run_time_secs())).collect();

    #[derive(Default)]
    struct Acc {
        uses: BTreeMap<u32, LockUse>,
        sites: HashMap<i32, u64>,
        kinds: HashMap<LockKind, u64>,
    }
    let mut by_lock: BTreeMap<(u64, u32), Acc> = BTreeMap::new();
    for r in trace.records.iter().filter(|r| options.include_interrupt || !r.in_interrupt) {
        let acc = by_lock.entry((r.lock_addr, r.generation)).or_default();
        let u = acc.uses.entry(r.workload).or_insert_with(|| LockUse {
            workload: r.workload,
            workload_name: workload_names.get(&r.workload).unwrap_or(&"?").to_string(),
            acquisitions: 0,
            rate_per_sec: 0.0,
            wait_total_ns: 0,
            wait_max_ns: 0,
            hold_total_ns: 0,
            hold_max_ns: 0,
        });
        u.acquisitions += r.count;
        u.wait_total_ns += r.wait_total_ns;
        u.wait_max_ns = u.wait_max_ns.max(r.wait_max_ns);
        u.hold_total_ns += r.hold_total_ns;
        u.hold_max_ns = u.hold_max_ns.max(r.hold_max_ns);
        *acc.sites.entry(r.stack_id).or_default() += r.count;
        *acc.kinds.entry(r.kind()).or_default() += r.count;
    }

    let mut locks: Vec<LockSummary> = by_lock
        .into_iter()
        .map(|((addr, generation), acc)| {
            let mut uses: Vec<LockUse> = acc.uses.into_values().collect();
            for u in &mut uses {
                let secs = run_secs.get(&u.workload).copied().unwrap_or(0.0);
                u.rate_per_sec = if secs > 0.0 { u.acquisitions as f64 / secs } else { 0.0 };
            }
            let mut sites: Vec<(i32, u64)> = acc.sites.into_iter().collect();
            sites.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let runtime = names_by_lock.get(&(addr, generation)).copied();
            // Another version's source names only what run time could not
            // (a lock outside slabs), and a global only in static data.
            let resolved = most_named(&sites, &sites_by_stack).filter(|s| {
                s.method != SiteMethod::OtherVersion
                    || (runtime.is_none()
                        && outside_slabs.contains(&(addr, generation))
                        && (s.scope == Scope::Member || in_kernel_image(addr)))
            });
            // Where no stack names the lock, the most acquired one may still place it.
            let placed = sites.iter().find_map(|(id, _)| sites_by_stack.get(id).and_then(|s| s.subsystem.clone()));
            // Where the source was asked and could not choose, what it said.
            let undecided =
                sites.first().and_then(|(id, _)| sites_by_stack.get(id)).filter(|s| s.candidates > 1).and_then(|s| s.reason.clone());
            let call_sites = sites
                .into_iter()
                .take(top_sites)
                .map(|(id, n)| {
                    let frames = stacks.get(&id).cloned().unwrap_or_default();
                    let source = sites_by_stack.get(&id).and_then(|s| s.source());
                    CallSite { acquisitions: n, site: frames::call_site(&frames).cloned(), source, frames }
                })
                .collect();
            let kind = acc.kinds.into_iter().max_by_key(|&(k, n)| (n, std::cmp::Reverse(k))).map(|(k, _)| k).unwrap_or(LockKind::Spinlock);
            let global = named_globals.then(|| symbols.data_symbol(addr)).flatten().map(|(s, off)| variable_at(&s.name, off));
            let source = resolved.and_then(|s| {
                let name = s.lock_name()?;
                Some(match (s.method, &trace.meta.sites_from) {
                    (SiteMethod::OtherVersion, Some(version)) => format!("{name} (as in {version})"),
                    _ => name,
                })
            });
            // The source's name where the call site was resolved, else the run-time one.
            let object = source.clone().or_else(|| runtime.and_then(runtime_label));
            LockSummary {
                addr,
                generation,
                kind,
                names: resolved.and_then(|s| source_name(s, addr, generation)).into_iter().chain(runtime.cloned()).collect(),
                names_agree: source.zip(runtime).and_then(|(source, runtime)| runtime.agrees_with(&source)),
                scope: resolved
                    .map(|s| s.scope)
                    .or_else(|| runtime.map(|n| if n.object.is_some() { Scope::Member } else { Scope::Global })),
                subsystem: resolved.and_then(|s| s.subsystem.clone()).or(placed),
                why_unnamed: (object.is_none() && global.is_none()).then(|| {
                    let why = why_unnamed((addr, generation));
                    match undecided {
                        Some(reason) => format!("{why}; {reason}"),
                        None => why,
                    }
                }),
                object,
                global,
                shared: uses.len() >= 2,
                acquisitions: uses.iter().map(|u| u.acquisitions).sum(),
                uses,
                call_sites,
            }
        })
        .collect();
    locks.sort_by(|a, b| b.shared.cmp(&a.shared).then(b.acquisitions.cmp(&a.acquisitions)).then(a.addr.cmp(&b.addr)));

    let workloads = trace
        .meta
        .workloads
        .iter()
        .map(|w| {
            let mine = locks.iter().filter_map(|l| l.uses.iter().find(|u| u.workload == w.id).map(|u| (l, u)));
            let (mut acquisitions, mut n, mut private, mut shared) = (0, 0, 0, 0);
            for (l, u) in mine {
                acquisitions += u.acquisitions;
                n += 1;
                if l.shared {
                    shared += 1
                } else {
                    private += 1
                }
            }
            WorkloadSummary {
                id: w.id,
                name: w.name.clone(),
                selector: w.selector.to_string(),
                pids: w.pids.clone(),
                run_time_secs: w.run_time_secs(),
                exit: w.exit.clone(),
                acquisitions,
                locks: n,
                private_locks: private,
                shared_locks: shared,
                irq_filtered: w.irq_filtered,
            }
        })
        .collect();

    let exposures = crate::score::exposures(trace, &locks, options.include_interrupt);
    Analysis {
        mode: trace.meta.mode,
        kernel_release: trace.meta.kernel_release.clone(),
        duration_secs: trace.meta.duration_ns() as f64 / 1e9,
        shared_locks: locks.iter().filter(|l| l.shared).count(),
        workloads,
        locks,
        counters: trace.meta.counters.clone(),
        recorder_cost: trace.meta.recorder_cost.clone(),
        includes_interrupt: options.include_interrupt,
        kallsyms_all: trace.meta.kallsyms_all,
        notes: trace.meta.notes.clone(),
        waits_by_holder: crate::holders::waits_by_holder(trace, options.include_interrupt),
        exposures,
    }
}

#[cfg(test)]
mod tests {
    use lockscope_trace::*;

    use super::*;

    use crate::fixtures::{site, trace, OPTIONS};

    #[test]
    fn a_resolved_trace_names_locks_by_their_object() {
        // Lock B's acquisitions come from stack 2 only; A's mostly from stack 1.
        let resolved = Trace {
            sites: vec![site(1, Scope::Global, None, "inode_hash_lock"), site(2, Scope::Member, Some("inode"), "i_lock")],
            ..trace()
        };
        let a = analyze(&resolved, &OPTIONS);
        let b = a.locks.iter().find(|l| l.addr == 0xffff888000001000).unwrap();
        assert_eq!((b.object.as_deref(), b.scope, b.subsystem.as_deref()), (Some("inode.i_lock"), Some(Scope::Member), Some("fs")));
        assert_eq!(b.label(), "inode.i_lock @0xffff888000001000");
        assert_eq!(b.call_sites[0].source.as_ref().map(SourceLine::to_string).as_deref(), Some("fs/inode.c:1702"));
        let shared = a.locks.iter().find(|l| l.shared).unwrap();
        assert_eq!(shared.object.as_deref(), Some("inode_hash_lock"), "the name most acquisitions point to");
        // Unresolved, a lock keeps its address.
        let plain = analyze(&trace(), &OPTIONS);
        assert!(plain.locks.iter().all(|l| l.object.is_none()));
    }

    #[test]
    fn source_and_run_time_names_are_both_kept_and_checked_against_each_other() {
        let runtime = |lock_addr, member: &str| LockName {
            lock_addr,
            generation: 0,
            by: NameSource::Slab,
            object: Some("ext4_inode_info".into()),
            member: Some(format!("vfs_inode.{member}")),
            global: None,
            confidence: Confidence::Inferred,
            alternatives: vec![],
            spellings: vec![format!("ext4_inode_info.vfs_inode.{member}"), format!("inode.{member}")],
        };
        let both = Trace {
            sites: vec![site(2, Scope::Member, Some("inode"), "i_lock")],
            names: vec![runtime(0xffff888000001000, "i_lock")],
            ..trace()
        };
        let a = analyze(&both, &OPTIONS);
        let b = a.locks.iter().find(|l| l.addr == 0xffff888000001000).unwrap();
        let by: Vec<NameSource> = b.names.iter().map(|n| n.by).collect();
        assert_eq!(by, [NameSource::Source, NameSource::Slab], "the source's name first");
        assert_eq!(b.object.as_deref(), Some("inode.i_lock"), "the source's name is the best");
        assert_eq!(b.names_agree, Some(true), "inode.i_lock is how the run-time name spells it from struct inode");
        let other = Trace { names: vec![runtime(0xffff888000001000, "i_rwsem")], ..both };
        let b = analyze(&other, &OPTIONS).locks.into_iter().find(|l| l.addr == 0xffff888000001000).unwrap();
        assert_eq!(b.names_agree, Some(false), "a disagreement is flagged");
        let alone = analyze(&trace(), &OPTIONS);
        assert!(alone.locks.iter().all(|l| l.names_agree.is_none()), "one name has nothing to agree with");
    }

    /// A freed object's address may come back in another cache's object: each
    /// generation of address C keeps the name noted for it.
    #[test]
    fn each_generation_of_an_address_has_its_own_name() {
        const C: u64 = 0xffff888000002000;
        let name = |generation, object: &str, member: &str| LockName {
            lock_addr: C,
            generation,
            by: NameSource::Slab,
            object: Some(object.into()),
            member: Some(member.into()),
            global: None,
            confidence: Confidence::Exact,
            alternatives: vec![],
            spellings: vec![],
        };
        let named = Trace { names: vec![name(1, "sighand_struct", "siglock"), name(0, "mm_struct", "mmap_lock.wait_lock")], ..trace() };
        let a = analyze(&named, &OPTIONS);
        let object = |generation| a.locks.iter().find(|l| (l.addr, l.generation) == (C, generation)).unwrap().object.clone();
        assert_eq!(object(0).as_deref(), Some("mm_struct.mmap_lock.wait_lock"));
        assert_eq!(object(1).as_deref(), Some("sighand_struct.siglock"));
    }

    #[test]
    fn a_call_site_placed_by_function_name_gives_a_subsystem_but_no_name() {
        let placed = StackSite { scope: Scope::Unknown, method: SiteMethod::FunctionName, line: None, ..site(2, Scope::Unknown, None, "") };
        let a = analyze(&Trace { sites: vec![StackSite { variable: None, ..placed }], ..trace() }, &OPTIONS);
        let b = a.locks.iter().find(|l| l.addr == 0xffff888000001000).unwrap();
        assert_eq!((b.object.as_deref(), b.subsystem.as_deref()), (None, Some("fs")));
    }

    /// Another kernel version's source names a static lock nothing else
    /// named, as an inference that says so; never a heap lock or a lock a
    /// run-time source named.
    #[test]
    fn another_version_s_source_names_only_unnamed_static_locks() {
        let other = |stack_id, name| StackSite { method: SiteMethod::OtherVersion, ..site(stack_id, Scope::Global, None, name) };
        let places =
            [0xffffffff82000010, 0xffff888000001000].map(|lock_addr| LockPlace { lock_addr, generation: 0, slab: None, slab_start: None });
        let mut inferred =
            Trace { sites: vec![other(1, "inode_hash_lock"), other(2, "inode_hash_lock")], places: places.into(), ..trace() };
        inferred.meta.sites_from = Some("6.12".into());
        inferred.meta.kallsyms_all = false;
        let a = analyze(&inferred, &OPTIONS);
        let lock = |addr: u64| a.locks.iter().find(|l| (l.addr, l.generation) == (addr, 0)).unwrap();
        let static_lock = lock(0xffffffff82000010);
        assert_eq!(static_lock.object.as_deref(), Some("inode_hash_lock (as in 6.12)"));
        assert_eq!((static_lock.names[0].by, static_lock.names[0].confidence), (NameSource::Source, Confidence::Inferred));
        let heap = lock(0xffff888000001000);
        assert_eq!((heap.object.as_deref(), heap.names.len()), (None, 0), "stack 2's heap lock is no global");
        assert!(heap.why_unnamed.as_deref().is_some_and(|w| w.starts_with("in no slab object")), "{:?}", heap.why_unnamed);
        // A member's name fits a lock outside slabs (a page of its own), not one no place was noted for.
        let member = StackSite { method: SiteMethod::OtherVersion, ..site(2, Scope::Member, Some("vmap_node"), "busy.lock") };
        let a = analyze(&Trace { sites: vec![member], ..inferred.clone() }, &OPTIONS);
        let object = |addr: u64, generation| a.locks.iter().find(|l| (l.addr, l.generation) == (addr, generation)).unwrap().object.clone();
        assert_eq!(object(0xffff888000001000, 0).as_deref(), Some("vmap_node.busy.lock (as in 6.12)"));
        assert_eq!(object(0xffff888000002000, 0), None, "C's place was not noted");
        // Where the source could not choose, the lock says what it found.
        let reason = "in this source iput takes 2 such spinlock locks: a.l, b.l";
        let undecided = StackSite { candidates: 2, reason: Some(reason.into()), ..site(2, Scope::Unknown, None, "") };
        let a = analyze(
            &Trace { sites: vec![StackSite { method: SiteMethod::FunctionName, variable: None, ..undecided }], ..inferred.clone() },
            &OPTIONS,
        );
        let heap = a.locks.iter().find(|l| l.addr == 0xffff888000001000).unwrap();
        assert!(heap.why_unnamed.as_deref().is_some_and(|w| w.ends_with(reason)), "{:?}", heap.why_unnamed);

        let named = LockName {
            lock_addr: 0xffffffff82000010,
            generation: 0,
            by: NameSource::Percpu,
            object: None,
            member: None,
            global: Some("runqueues".into()),
            confidence: Confidence::Exact,
            alternatives: vec![],
            spellings: vec![],
        };
        let a = analyze(&Trace { names: vec![named], ..inferred }, &OPTIONS);
        let lock = a.locks.iter().find(|l| l.addr == 0xffffffff82000010).unwrap();
        assert_eq!(lock.object.as_deref(), Some("runqueues"), "the run-time name stands");
        assert_eq!(lock.names.iter().map(|n| n.by).collect::<Vec<_>>(), [NameSource::Percpu]);
    }

    #[test]
    fn shared_and_private_by_address_and_generation() {
        let a = analyze(&trace(), &OPTIONS);
        assert_eq!(a.shared_locks, 1);
        let shared: Vec<_> = a.locks.iter().filter(|l| l.shared).collect();
        assert_eq!(shared[0].addr, 0xffffffff82000010);
        assert_eq!(shared[0].global.as_deref(), Some("inode_hash_lock+0x10"));
        let w1 = &a.workloads[0];
        assert_eq!((w1.locks, w1.shared_locks, w1.private_locks), (3, 1, 2));
        let w2 = &a.workloads[1];
        assert_eq!((w2.locks, w2.shared_locks, w2.private_locks), (2, 1, 1));
    }

    #[test]
    fn interrupt_context_is_left_out_unless_asked_for() {
        let with = analyze(&trace(), &Options { include_interrupt: true, ..OPTIONS });
        assert_eq!(with.shared_locks, 2, "B becomes shared when w2's interrupt acquisitions count");
    }

    #[test]
    fn rate_is_count_over_the_workloads_own_time() {
        let a = analyze(&trace(), &OPTIONS);
        let lock = a.locks.iter().find(|l| l.shared).unwrap();
        let w1 = lock.uses.iter().find(|u| u.workload == 1).unwrap();
        let w2 = lock.uses.iter().find(|u| u.workload == 2).unwrap();
        assert_eq!(w1.acquisitions, 120);
        assert!((w1.rate_per_sec - 12.0).abs() < 1e-9);
        assert!((w2.rate_per_sec - 10.0).abs() < 1e-9, "50 in w2's own 5 s");
    }

    #[test]
    fn call_sites_skip_the_lock_implementation() {
        let a = analyze(&trace(), &OPTIONS);
        let lock = a.locks.iter().find(|l| l.shared).unwrap();
        assert_eq!(lock.call_sites[0].acquisitions, 150);
        assert_eq!(lock.call_sites[0].frames.iter().map(Frame::to_string).collect::<Vec<_>>(), ["_raw_spin_lock+0x4", "iput+0x4"]);
        assert_eq!(lock.call_sites[0].site.as_ref().map(Frame::to_string).as_deref(), Some("iput+0x4"));
    }
}
