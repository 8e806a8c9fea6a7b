//! Who made whom wait: each workload's waits summed by the holder of the
//! lock it waited for (the recorder reads the owner from a mutex's or a
//! writer-held rwsem's lock word, and a spinlock's from what runs on the
//! other CPUs). Interference between two workloads is a wait of one on a
//! lock the other held.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use lockscope_trace::{Holder, Trace};
use serde::Serialize;

/// What held the locks a workload waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HolderKind {
    /// Another recorded workload.
    Workload,
    /// The waiting workload's own processes.
    #[serde(rename = "self")]
    Itself,
    /// A process outside the recorded workloads.
    Other,
    /// The holder could not be told (see [`UNKNOWN_HOLDER`]).
    Unknown,
}

/// When a wait's holder is not known.
pub const UNKNOWN_HOLDER: &str =
    "reader-held rwsems, locks released meanwhile, spinlocks while an interrupt, the idle task or two processes ran on the other CPUs";

/// Why spinlock waits went without a holder, from the recorder's counters:
/// "spinlock waits with no holder named: 12 ended before ...", or None when
/// every spinlock wait's holder was named.
pub fn unnamed_spinlock_holders(c: &lockscope_trace::Counters) -> Option<String> {
    (c.holder_released + c.holder_unseen + c.holder_ambiguous > 0).then(|| {
        format!(
            "spinlock waits with no holder named: {} with the lock free again before the recorder could read it (the holder let go \
             within about a microsecond), {} while another CPU served an interrupt or had not been seen yet, {} while the other CPUs \
             ran the idle task, several processes or none that could hold it",
            c.holder_released, c.holder_unseen, c.holder_ambiguous
        )
    })
}

/// One workload's waits on locks held by one holder.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HolderWaits {
    pub waiter: String,
    pub holder_kind: HolderKind,
    /// The holding workload's name (for `workload` and `self`).
    pub holder: Option<String>,
    pub waits: u64,
    pub wait_total_ns: u64,
    /// Distinct locks waited for.
    pub locks: usize,
}

impl HolderWaits {
    /// "a waited 12.3 ms (1,234 waits on 1 lock) on locks held by b".
    pub fn sentence(&self) -> String {
        let whom = match (self.holder_kind, &self.holder) {
            (HolderKind::Workload, Some(h)) => format!("locks held by {h}"),
            (HolderKind::Itself, _) => "locks held by its own processes".into(),
            (HolderKind::Other, _) => "locks held by processes outside the recorded workloads".into(),
            _ => format!("locks whose holder could not be told ({UNKNOWN_HOLDER})"),
        };
        let plural = |n: usize, one: &str| if n == 1 { format!("1 {one}") } else { format!("{n} {one}s") };
        format!(
            "{} waited {:.1} ms ({} on {}) on {whom}",
            self.waiter,
            self.wait_total_ns as f64 / 1e6,
            plural(self.waits as usize, "wait"),
            plural(self.locks, "lock")
        )
    }
}

/// Milliseconds of waiting per second of run time, by who held the lock:
/// what one experiment's instances lost, and to whom.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct WaitShares {
    /// On locks another recorded workload held.
    pub other_workload: f64,
    /// On locks the waiter's own processes held.
    pub own: f64,
    /// On locks processes outside the recorded workloads held.
    pub outside: f64,
    /// On locks whose holder could not be told.
    pub unknown: f64,
}

impl WaitShares {
    /// The waits of an analysed trace, over all its workloads' run time.
    pub fn of(a: &crate::Analysis) -> WaitShares {
        let run_secs: f64 = a.workloads.iter().map(|w| w.run_time_secs).sum();
        let mut s = WaitShares::default();
        if run_secs <= 0.0 {
            return s;
        }
        for w in &a.waits_by_holder {
            let field = match w.holder_kind {
                HolderKind::Workload => &mut s.other_workload,
                HolderKind::Itself => &mut s.own,
                HolderKind::Other => &mut s.outside,
                HolderKind::Unknown => &mut s.unknown,
            };
            *field += w.wait_total_ns as f64 / 1e6 / run_secs;
        }
        s
    }

    /// The mean of several runs' shares.
    pub fn mean(all: &[WaitShares]) -> WaitShares {
        let n = all.len().max(1) as f64;
        let sum = |f: fn(&WaitShares) -> f64| all.iter().map(f).sum::<f64>() / n;
        WaitShares {
            other_workload: sum(|s| s.other_workload),
            own: sum(|s| s.own),
            outside: sum(|s| s.outside),
            unknown: sum(|s| s.unknown),
        }
    }

    /// The four shares as text, in that order.
    pub fn columns(&self) -> [String; 4] {
        [self.other_workload, self.own, self.outside, self.unknown].map(|v| format!("{v:.2}"))
    }
}

/// Every workload's waits by holder: other workloads first, then its own,
/// other processes, and waits whose holder is unknown; the longest first
/// within each. Waits made while serving an interrupt count only when
/// `include_interrupt`.
pub fn waits_by_holder(trace: &Trace, include_interrupt: bool) -> Vec<HolderWaits> {
    let names: HashMap<u32, &str> = trace.meta.workloads.iter().map(|w| (w.id, w.name.as_str())).collect();
    let name = |id: u32| names.get(&id).map_or_else(|| format!("workload {id}"), |n| n.to_string());
    #[derive(Default)]
    struct Sum {
        waits: u64,
        ns: u64,
        locks: BTreeSet<u64>,
    }
    let mut acc: BTreeMap<(u32, HolderKind, Option<u32>), Sum> = BTreeMap::new();
    for w in trace.held_waits.iter().filter(|w| include_interrupt || !w.in_interrupt) {
        let (kind, holder) = match w.holder {
            Holder::Workload(h) if h == w.waiter => (HolderKind::Itself, Some(h)),
            Holder::Workload(h) => (HolderKind::Workload, Some(h)),
            Holder::Other { .. } => (HolderKind::Other, None),
            Holder::Unknown => (HolderKind::Unknown, None),
        };
        let e = acc.entry((w.waiter, kind, holder)).or_default();
        e.waits += w.count;
        e.ns += w.wait_total_ns;
        e.locks.insert(w.lock_addr);
    }
    let mut out: Vec<HolderWaits> = acc
        .into_iter()
        .map(|((waiter, kind, holder), sum)| HolderWaits {
            waiter: name(waiter),
            holder_kind: kind,
            holder: holder.map(name),
            waits: sum.waits,
            wait_total_ns: sum.ns,
            locks: sum.locks.len(),
        })
        .collect();
    out.sort_by_key(|w| (w.holder_kind, std::cmp::Reverse(w.wait_total_ns)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockscope_trace::HeldWait;

    #[test]
    fn waits_are_summed_per_waiter_and_holder() {
        let wait =
            |waiter, holder, lock_addr, wait_total_ns| HeldWait { waiter, holder, lock_addr, count: 2, wait_total_ns, in_interrupt: false };
        let trace = Trace {
            held_waits: vec![
                wait(1, Holder::Workload(2), 0x10, 4_000_000),
                wait(1, Holder::Workload(2), 0x20, 8_300_000),
                wait(1, Holder::Workload(1), 0x10, 1_000_000),
                wait(2, Holder::Other { tgid: 9 }, 0x30, 500_000),
                wait(2, Holder::Unknown, 0x40, 100),
            ],
            ..crate::fixtures::trace()
        };
        let by = waits_by_holder(&trace, false);
        let sentences: Vec<String> = by.iter().map(HolderWaits::sentence).collect();
        assert_eq!(
            sentences,
            [
                "w1 waited 12.3 ms (4 waits on 2 locks) on locks held by w2",
                "w1 waited 1.0 ms (2 waits on 1 lock) on locks held by its own processes",
                "w2 waited 0.5 ms (2 waits on 1 lock) on locks held by processes outside the recorded workloads",
                "w2 waited 0.0 ms (2 waits on 1 lock) on locks whose holder could not be told (reader-held rwsems, locks released \
                 meanwhile, spinlocks while an interrupt, the idle task or two processes ran on the other CPUs)",
            ]
        );
        assert_eq!(serde_json::to_value(&by[1]).unwrap()["holder_kind"], "self");
        // Over the workloads' 15 s of run time.
        let shares = WaitShares::of(&crate::analyze(&trace, &crate::fixtures::OPTIONS));
        assert_eq!(shares.columns(), ["0.82", "0.07", "0.03", "0.00"], "{shares:?}");
    }
}
