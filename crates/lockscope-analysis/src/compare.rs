//! Across traces: the paper's Table 5 (section 6) and what lockscope adds.
//!
//! Each trace is one run of two (or more) identical workloads on one
//! platform. Traces with the same workload and platform are runs of one
//! experiment. For each experiment:
//!
//! * *shared count*: the locks (by address and generation) acquired by two or
//!   more of the workloads, counted per run and averaged over runs;
//! * *cumulative rate*: each shared lock's rate — the sum over the workloads
//!   of its acquisitions divided by that workload's run time — summed per
//!   lock identity (name, function, file, type) across runs, and over all
//!   shared locks for the cell;
//! * *exposure*: the share of a workload's run time lost waiting on locks
//!   another workload held (see [`crate::score`]), median over both
//!   directions and every run, with its interval; the *isolation score* is
//!   100 × (1 − exposure): 100 means no time at all lost to the other.

use std::collections::BTreeMap;

use lockscope_trace::{Frame, LockKind, Scope};
use serde::Serialize;

use crate::analyze::{Analysis, LockSummary};
use crate::holders::WaitShares;
use crate::score::isolation_score;
use crate::stats::Estimate;

/// Where a trace belongs in a comparison: its workload (the label given to
/// `record --label`, else the workload's command or container) and its
/// platform (of `record --workload`, the runtime of `record --container`,
/// else host).
pub fn place(trace: &lockscope_trace::Trace) -> (String, String) {
    use lockscope_trace::Selector;
    let first = trace.meta.workloads.first().map(|w| &w.selector);
    let platform = match first {
        Some(Selector::Platform { platform, .. }) => platform.clone(),
        Some(Selector::Container { runtime, .. }) => runtime.clone(),
        _ => "host".to_owned(),
    };
    let command_name = |command: &str| {
        let words: Vec<&str> = command.split_whitespace().collect();
        let program = words.first().map_or("?", |p| p.rsplit('/').next().unwrap_or(p));
        // `lockscope workload NAME ...` is the built-in workload NAME.
        match (program, words.get(1), words.get(2)) {
            ("lockscope", Some(&"workload"), Some(name)) => name.to_string(),
            _ => program.to_owned(),
        }
    };
    let workload = trace.meta.label.clone().unwrap_or_else(|| match first {
        Some(Selector::Platform { workload, .. }) => command_name(&format!("lockscope workload {workload}")),
        Some(Selector::Run { command }) => command_name(command),
        Some(Selector::Pid { pid }) => format!("pid {pid}"),
        Some(Selector::Cgroup { path }) => path.rsplit('/').find(|p| !p.is_empty()).unwrap_or("cgroup").to_owned(),
        Some(Selector::Container { container, .. }) => container.clone(),
        None => "?".to_owned(),
    });
    (workload, platform)
}

/// One trace's analysis and where it belongs.
pub struct Run<'a> {
    pub workload: String,
    pub platform: String,
    pub analysis: &'a Analysis,
}

/// The name of a lock whose object and global are unknown.
const UNNAMED: &str = "?";

/// A lock as the paper identifies it across runs: name, function, file, type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct LockIdentity {
    /// The source object (`journal_t.j_list_lock`) or global; else `?`.
    pub name: String,
    /// The function that takes it (the most frequent call site).
    pub function: String,
    /// The source file of the acquisition, when resolved.
    pub file: String,
    pub kind: LockKind,
}

impl LockIdentity {
    pub fn of(lock: &LockSummary) -> Self {
        let top = lock.call_sites.first();
        let function = top.and_then(|c| c.site.as_ref()).map_or_else(|| "?".into(), Frame::function_name);
        let file = top.and_then(|c| c.source.as_ref()).map(|s| s.file.clone()).unwrap_or_default();
        LockIdentity {
            name: lock.object.clone().or_else(|| lock.global.clone()).unwrap_or_else(|| UNNAMED.into()),
            function,
            file,
            kind: lock.kind,
        }
    }

    /// How a person reads it: the name if known, else the function.
    pub fn label(&self) -> String {
        match self.is_named() {
            false => format!("{} lock in {}", self.kind, self.function),
            true => format!("{} ({})", self.name, self.function),
        }
    }

    /// Whether it has a name (an object or a global), not only a call site.
    pub fn is_named(&self) -> bool {
        self.name != UNNAMED
    }
}

/// One cell of Table 5, with lockscope's additions.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub workload: String,
    pub platform: String,
    pub runs: usize,
    pub shared_per_run: Vec<usize>,
    /// Mean shared-lock count over runs (Table 5's first number).
    pub shared_mean: f64,
    /// Shared-lock rates summed over locks and runs (Table 5's number in parentheses).
    pub cumulative_rate: f64,
    /// The share (0 to 1) of that rate whose locks are named (object or
    /// global); None where nothing is shared.
    pub named_share: Option<f64>,
    /// The median share of a workload's run time lost to the other (see [`crate::score`]).
    pub exposure: f64,
    /// 100 × (1 − exposure).
    pub isolation_score: f64,
    /// The score's interval: 100 × (1 − the exposure's bounds).
    pub score_ci_low: f64,
    pub score_ci_high: f64,
    /// The interval's confidence (below 95% with fewer than 6 exposures).
    pub score_coverage: f64,
    /// Waiting per second of run time by who held the lock, mean over runs.
    pub waits_ms_per_s: WaitShares,
}

impl Cell {
    /// "99.87 [99.80, 99.93]": the score with its interval.
    pub fn score_text(&self) -> String {
        format!("{:.2} [{:.2}, {:.2}]", self.isolation_score, self.score_ci_low, self.score_ci_high)
    }
}

/// A shared lock of one experiment, summed over its runs.
#[derive(Clone, Debug, Serialize)]
pub struct SharedLock {
    pub workload: String,
    pub platform: String,
    pub lock: LockIdentity,
    pub scope: Option<Scope>,
    pub subsystem: Option<String>,
    /// Runs in which it was shared.
    pub runs: usize,
    pub cumulative_rate: f64,
    /// Its other names' spellings (run time's from each struct the lock is
    /// embedded in, the source's): one lock named two ways in two kernels
    /// is the same lock.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spellings: Vec<String>,
}

/// Shared-lock rate of one experiment in one kernel subsystem (Figures 2, 3).
#[derive(Clone, Debug, Serialize)]
pub struct SubsystemRate {
    pub workload: String,
    pub platform: String,
    /// From the resolved source path; `unresolved` where the trace was not resolved.
    pub subsystem: String,
    pub cumulative_rate: f64,
}

/// One workload's shared locks on one platform, from one kernel to another
/// (does a newer kernel share less?). Locks are matched by name: a kernel
/// named at run time and one named from its source may spell a lock two
/// ways (`ext4_inode_info.vfs_inode.i_lock`, `inode.i_lock`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct KernelChange {
    pub workload: String,
    /// The two columns: one platform in two kernels (`host`, `host@6.1`).
    pub from: String,
    pub to: String,
    /// Names shared in `to` and not in `from`, busiest first.
    pub appeared: Vec<String>,
    /// Names shared in `from` and not in `to`, busiest first.
    pub disappeared: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Row and column order: as first seen.
    pub workloads: Vec<String>,
    pub platforms: Vec<String>,
    pub cells: Vec<Cell>,
    /// Most frequent first.
    pub shared_locks: Vec<SharedLock>,
    pub subsystems: Vec<SubsystemRate>,
    /// Where one platform was studied in more than one kernel.
    pub kernel_changes: Vec<KernelChange>,
}

impl Comparison {
    pub fn cell(&self, workload: &str, platform: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.workload == workload && c.platform == platform)
    }
}

/// Each trace analyzed and placed (see [`place`]), then compared.
pub fn compare_traces<'a>(traces: impl IntoIterator<Item = &'a lockscope_trace::Trace>, options: &crate::Options) -> Comparison {
    let analyzed: Vec<_> = traces.into_iter().map(|t| (place(t), crate::analyze(t, options))).collect();
    let runs: Vec<Run> = analyzed.iter().map(|((w, p), a)| Run { workload: w.clone(), platform: p.clone(), analysis: a }).collect();
    compare(&runs)
}

/// A shared lock's rate in one run: each workload's acquisitions over its run time, summed.
fn shared_rate(lock: &LockSummary) -> f64 {
    lock.uses.iter().map(|u| u.rate_per_sec).sum()
}

pub fn compare(runs: &[Run]) -> Comparison {
    let mut workloads: Vec<String> = Vec::new();
    let mut platforms: Vec<String> = Vec::new();
    let mut experiments: BTreeMap<(usize, usize), Vec<&Analysis>> = BTreeMap::new();
    for r in runs {
        let index = |list: &mut Vec<String>, name: &str| {
            list.iter().position(|n| n == name).unwrap_or_else(|| {
                list.push(name.to_owned());
                list.len() - 1
            })
        };
        let key = (index(&mut workloads, &r.workload), index(&mut platforms, &r.platform));
        experiments.entry(key).or_default().push(r.analysis);
    }

    let (mut cells, mut shared_locks, mut subsystems) = (Vec::new(), Vec::new(), Vec::new());
    for ((wi, pi), analyses) in &experiments {
        let (workload, platform) = (&workloads[*wi], &platforms[*pi]);
        let shared_per_run: Vec<usize> = analyses.iter().map(|a| a.shared_locks).collect();
        let mut by_identity: BTreeMap<LockIdentity, SharedLock> = BTreeMap::new();
        let mut by_subsystem: BTreeMap<String, f64> = BTreeMap::new();
        let mut seen_in_run: std::collections::HashSet<(usize, LockIdentity)> = Default::default();
        for (run, a) in analyses.iter().enumerate() {
            for lock in a.locks.iter().filter(|l| l.shared) {
                let rate = shared_rate(lock);
                let identity = LockIdentity::of(lock);
                let entry = by_identity.entry(identity.clone()).or_insert_with(|| SharedLock {
                    workload: workload.clone(),
                    platform: platform.clone(),
                    lock: identity,
                    scope: lock.scope,
                    subsystem: lock.subsystem.clone(),
                    runs: 0,
                    cumulative_rate: 0.0,
                    spellings: vec![],
                });
                for spelling in lock.names.iter().flat_map(|n| n.label().into_iter().chain(n.spellings.iter().cloned())) {
                    if spelling != entry.lock.name && !entry.spellings.contains(&spelling) {
                        entry.spellings.push(spelling);
                    }
                }
                // Instances of one identity (per-CPU, per-inode locks) merge; runs count once.
                if seen_in_run.insert((run, entry.lock.clone())) {
                    entry.runs += 1;
                }
                entry.cumulative_rate += rate;
                *by_subsystem.entry(lock.subsystem.clone().unwrap_or_else(|| "unresolved".into())).or_default() += rate;
            }
        }
        let cumulative_rate: f64 = by_identity.values().map(|l| l.cumulative_rate).sum();
        // A fold from +0.0: a sum over no locks is -0.0, and would print as "-0%".
        let named_rate = by_identity.values().filter(|l| l.lock.is_named()).fold(0.0, |sum, l| sum + l.cumulative_rate);
        let exposures: Vec<f64> = analyses.iter().flat_map(|a| a.exposures.iter().map(|e| e.exposure)).collect();
        let exposure = Estimate::of(&exposures).unwrap_or(Estimate { median: 0.0, ci_low: 0.0, ci_high: 0.0, coverage: 0.0, n: 0 });
        cells.push(Cell {
            workload: workload.clone(),
            platform: platform.clone(),
            runs: analyses.len(),
            shared_mean: shared_per_run.iter().sum::<usize>() as f64 / analyses.len() as f64,
            cumulative_rate,
            named_share: (cumulative_rate > 0.0).then(|| named_rate / cumulative_rate),
            shared_per_run,
            exposure: exposure.median,
            isolation_score: isolation_score(exposure.median),
            score_ci_low: isolation_score(exposure.ci_high),
            score_ci_high: isolation_score(exposure.ci_low),
            score_coverage: exposure.coverage,
            waits_ms_per_s: WaitShares::mean(&analyses.iter().map(|a| WaitShares::of(a)).collect::<Vec<_>>()),
        });
        shared_locks.extend(by_identity.into_values());
        subsystems.extend(by_subsystem.into_iter().map(|(subsystem, cumulative_rate)| SubsystemRate {
            workload: workload.clone(),
            platform: platform.clone(),
            subsystem,
            cumulative_rate,
        }));
    }
    shared_locks.sort_by(|a, b| b.cumulative_rate.total_cmp(&a.cumulative_rate));
    let kernel_changes = kernel_changes(&workloads, &platforms, &cells, &shared_locks);
    Comparison { workloads, platforms, cells, shared_locks, subsystems, kernel_changes }
}

/// A platform's column in a kernel other than the one lockscope runs on
/// (`host@6.1`): the kernel comparison reads the platform back from it.
pub fn kernel_column(platform: &str, kernel: &str) -> String {
    format!("{platform}@{kernel}")
}

/// The platform a column stands for: `host` of `host@6.1`.
fn platform_of(column: &str) -> &str {
    column.split_once('@').map_or(column, |(platform, _)| platform)
}

/// For each workload, each platform's columns in different kernels
/// (`host`, `host@6.1`) side by side, each with the one before it: the
/// shared locks (by name) one has and the other not.
fn kernel_changes(workloads: &[String], columns: &[String], cells: &[Cell], shared: &[SharedLock]) -> Vec<KernelChange> {
    // Named shared locks of one cell, busiest first (`shared` is sorted so).
    let names = |workload: &str, column: &str| -> Vec<&SharedLock> {
        let mut names: Vec<&SharedLock> = vec![];
        for l in shared.iter().filter(|l| l.workload == workload && l.platform == column && l.lock.is_named()) {
            if !names.iter().any(|n| n.lock.name == l.lock.name) {
                names.push(l);
            }
        }
        names
    };
    // One lock, however each kernel's names spell it.
    let same = |a: &SharedLock, b: &SharedLock| {
        a.lock.name == b.lock.name || a.spellings.contains(&b.lock.name) || b.spellings.contains(&a.lock.name)
    };
    let mut changes = vec![];
    for workload in workloads {
        let present: Vec<&String> =
            columns.iter().filter(|c| cells.iter().any(|cell| &cell.workload == workload && &cell.platform == *c)).collect();
        for (i, to) in present.iter().enumerate() {
            let Some(from) = present[..i].iter().rev().find(|c| platform_of(c) == platform_of(to)) else { continue };
            let (before, after) = (names(workload, from), names(workload, to));
            let only = |a: &[&SharedLock], b: &[&SharedLock]| {
                a.iter().filter(|x| !b.iter().any(|y| same(x, y))).map(|x| x.lock.name.clone()).collect()
            };
            changes.push(KernelChange {
                workload: workload.clone(),
                from: (*from).clone(),
                to: (*to).clone(),
                appeared: only(&after, &before),
                disappeared: only(&before, &after),
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::analyze;
    use crate::fixtures::{record, trace, OPTIONS};
    use lockscope_trace::Trace;

    const B: u64 = 0xffff888000001000;

    /// Run 1 shares lock A only; run 2 also shares B (w2 takes it outside interrupts).
    fn runs() -> (Analysis, Analysis) {
        let mut second: Trace = trace();
        second.records.push(record(2, B, 0, 10, 2));
        (analyze(&trace(), &OPTIONS), analyze(&second, &OPTIONS))
    }

    #[test]
    fn shared_counts_average_over_runs_and_rates_sum_across_them() {
        let (one, two) = runs();
        let c = compare(&[
            Run { workload: "file-create".into(), platform: "host".into(), analysis: &one },
            Run { workload: "file-create".into(), platform: "host".into(), analysis: &two },
            Run { workload: "file-create".into(), platform: "runc".into(), analysis: &one },
        ]);
        assert_eq!(c.workloads, ["file-create"]);
        assert_eq!(c.platforms, ["host", "runc"]);
        let host = c.cell("file-create", "host").unwrap();
        assert_eq!((host.runs, host.shared_per_run.clone(), host.shared_mean), (2, vec![1, 2], 1.5));
        // A: w1 120 in 10 s + w2 50 in 5 s = 22/s per run, twice; B in run 2: 7/10 + 10/5.
        assert!((host.cumulative_rate - (22.0 + 22.0 + 2.7)).abs() < 1e-9, "{host:?}");
        let a = c.shared_locks.iter().find(|l| l.platform == "host" && l.lock.name == "inode_hash_lock+0x10").unwrap();
        assert_eq!((a.runs, a.lock.function.as_str(), a.lock.kind), (2, "iput", LockKind::Spinlock));
        assert!((a.cumulative_rate - 44.0).abs() < 1e-9);
        let runc = c.cell("file-create", "runc").unwrap();
        assert_eq!((runc.runs, runc.shared_mean), (1, 1.0));
        assert!((runc.cumulative_rate - 22.0).abs() < 1e-9);
        assert_eq!(c.subsystems.iter().filter(|s| s.platform == "runc").map(|s| s.subsystem.as_str()).collect::<Vec<_>>(), ["unresolved"]);
    }

    #[test]
    fn a_platform_in_two_kernels_lists_the_shared_locks_that_appeared_and_disappeared() {
        use crate::fixtures::site;
        use lockscope_trace::Scope;
        let resolved = |t: Trace| Trace {
            sites: vec![site(1, Scope::Global, None, "inode_hash_lock"), site(2, Scope::Member, Some("inode"), "i_lock")],
            ..t
        };
        let mut both = trace();
        both.records.push(record(2, B, 0, 10, 2));
        let (one, two) = (analyze(&resolved(trace()), &OPTIONS), analyze(&resolved(both), &OPTIONS));
        let c = compare(&[
            Run { workload: "file-create".into(), platform: "host".into(), analysis: &one },
            Run { workload: "file-create".into(), platform: "runc".into(), analysis: &one },
            Run { workload: "file-create".into(), platform: "host@6.1".into(), analysis: &two },
        ]);
        let change = |appeared: &[&str], disappeared: &[&str], from: &str, to: &str| KernelChange {
            workload: "file-create".into(),
            from: from.into(),
            to: to.into(),
            appeared: appeared.iter().map(|n| n.to_string()).collect(),
            disappeared: disappeared.iter().map(|n| n.to_string()).collect(),
        };
        assert_eq!(c.kernel_changes, [change(&["inode.i_lock"], &[], "host", "host@6.1")], "runc is in one kernel only");
        let back = compare(&[
            Run { workload: "file-create".into(), platform: "host@6.1".into(), analysis: &two },
            Run { workload: "file-create".into(), platform: "host".into(), analysis: &one },
        ]);
        assert_eq!(back.kernel_changes, [change(&[], &["inode.i_lock"], "host@6.1", "host")]);

        // Named from the source in one kernel and at run time in the other: the same lock.
        let mut runtime = both_named();
        runtime.sites.clear();
        let (source, run_time) = (analyze(&resolved(both_named()), &OPTIONS), analyze(&runtime, &OPTIONS));
        let c = compare(&[
            Run { workload: "file-create".into(), platform: "host@6.1".into(), analysis: &source },
            Run { workload: "file-create".into(), platform: "host@6.12".into(), analysis: &run_time },
        ]);
        let b = c.shared_locks.iter().find(|l| l.platform == "host@6.12" && l.lock.name.starts_with("ext4_inode_info")).unwrap();
        assert!(b.spellings.contains(&"inode.i_lock".to_string()), "{b:?}");
        let listed = |n: &str| c.kernel_changes.iter().any(|k| k.appeared.iter().chain(&k.disappeared).any(|x| x.ends_with(n)));
        assert!(!listed("i_lock"), "{:?}", c.kernel_changes);
    }

    /// Lock B shared, with its run-time name (spelled from `struct inode` too).
    fn both_named() -> Trace {
        let mut t = trace();
        t.records.push(record(2, B, 0, 10, 2));
        t.names.push(lockscope_trace::LockName {
            lock_addr: B,
            generation: 0,
            by: lockscope_trace::NameSource::Slab,
            object: Some("ext4_inode_info".into()),
            member: Some("vfs_inode.i_lock".into()),
            global: None,
            confidence: lockscope_trace::Confidence::Exact,
            alternatives: vec![],
            spellings: vec!["ext4_inode_info.vfs_inode.i_lock".into(), "inode.i_lock".into()],
        });
        t
    }

    #[test]
    fn instances_of_one_lock_identity_merge_within_a_run() {
        // Two heap locks taken at one call site by both workloads: one identity.
        let mut t = trace();
        for addr in [0xffff888000005000, 0xffff888000006000] {
            t.records.extend([record(1, addr, 0, 10, 2), record(2, addr, 0, 10, 2)]);
        }
        let a = analyze(&t, &OPTIONS);
        let c = compare(&[Run { workload: "w".into(), platform: "p".into(), analysis: &a }]);
        assert_eq!(c.cells[0].shared_mean, 3.0, "A and the two heap locks, by address");
        let merged = c.shared_locks.iter().find(|l| l.lock.name == "?").unwrap();
        assert_eq!(merged.runs, 1);
        assert!((merged.cumulative_rate - 2.0 * (10.0 / 10.0 + 10.0 / 5.0)).abs() < 1e-9);
        assert_eq!(merged.lock.label(), "spinlock lock in iput");
    }

    #[test]
    fn resolved_locks_are_named_by_their_object_with_scope_and_subsystem() {
        let resolved = Trace { sites: vec![crate::fixtures::site(1, Scope::Global, None, "inode_hash_lock")], ..trace() };
        let a = analyze(&resolved, &OPTIONS);
        let c = compare(&[Run { workload: "file-create".into(), platform: "host".into(), analysis: &a }]);
        let lock = &c.shared_locks[0];
        assert_eq!((lock.lock.name.as_str(), lock.lock.file.as_str()), ("inode_hash_lock", "fs/inode.c"));
        assert_eq!((lock.scope, lock.subsystem.as_deref()), (Some(Scope::Global), Some("fs")));
        assert_eq!(c.subsystems[0].subsystem, "fs");
        assert_eq!(c.cells[0].named_share, Some(1.0), "its one shared lock is named");
        let mut unresolved = trace();
        unresolved.symbols.retain(|s| s.kind != lockscope_trace::SymbolKind::Data);
        let unresolved = analyze(&unresolved, &OPTIONS);
        let unnamed = compare(&[Run { workload: "file-create".into(), platform: "host".into(), analysis: &unresolved }]);
        assert!(unnamed.cells[0].cumulative_rate > 0.0 && unnamed.cells[0].named_share == Some(0.0), "{:?}", unnamed.cells[0]);
        assert_eq!(crate::render::percent(unnamed.cells[0].named_share), "0%", "not -0%");
        assert!(crate::render::comparison_table(&c).contains("NAMED: share of that rate"));
        let page = crate::html::render(&crate::html::Page { title: "t", notes: &[], comparison: &c, stress: &[], correlations: &[] });
        assert!(page.contains("<td class=\"text\">inode_hash_lock</td><td class=\"text\">global</td><td class=\"text\">fs</td>"), "{page}");
    }

    #[test]
    fn exposure_is_the_share_of_run_time_lost_to_the_other() {
        let (one, _) = runs();
        let c = compare(&[Run { workload: "w".into(), platform: "p".into(), analysis: &one }]);
        let cell = &c.cells[0];
        // No holders recorded: each wait on lock A (10 ns per contended acquisition) counts by the
        // other's share of A's acquisitions: w1 1200 ns × 50/170 of 10 s, w2 500 ns × 120/170 of 5 s.
        // B is private; C's two generations are two locks.
        let (w1, w2) = (1200e-9 * 50.0 / 170.0 / 10.0, 500e-9 * 120.0 / 170.0 / 5.0);
        assert!((cell.exposure - (w1 + w2) / 2.0).abs() < 1e-18, "{cell:?}");
        assert!((cell.isolation_score - 100.0 * (1.0 - cell.exposure)).abs() < 1e-9);
        assert!((cell.score_ci_low - 100.0 * (1.0 - w2)).abs() < 1e-9 && (cell.score_ci_high - 100.0 * (1.0 - w1)).abs() < 1e-9);
        assert_eq!(cell.score_coverage, 0.5, "two exposures: their range holds the median half the time");
    }
}
