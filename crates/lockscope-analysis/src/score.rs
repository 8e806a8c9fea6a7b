//! The isolation score: how much of a workload's run time goes to meeting
//! another workload in a kernel lock.
//!
//! For a workload *a* beside a workload *b*, the *exposure* of *a* to *b* is
//! the share of *a*'s run time T_a spent waiting because *b* held a lock:
//!
//! * contention mode (the meetings that happened): the waits of *a* the
//!   lock word attributes to *b* (mutexes, writer-held rwsems), plus, for each
//!   lock whose holder the word does not name (spinlocks), *a*'s waits on it
//!   times *b*'s share of the lock's acquisitions made while *a* ran:
//!   E_ab = (Σ W_a←b + Σ_ℓ W_a?(ℓ) · n_b(ℓ) c_b / Σ_w n_w(ℓ) c_w) / T_a,
//!   c_w the share of *w*'s run time during which *a* ran too (workloads of
//!   one trace need not have run at the same time: a stress trace holds
//!   every run's instances);
//! * acquire mode (the chances of meeting): each acquisition of a lock ℓ by
//!   *a* finds it held by *b* with probability U_b(ℓ) = H_b(ℓ) / T_b (*b*'s
//!   hold time over its run time) and then waits half of *b*'s mean hold
//!   h_b(ℓ) = H_b(ℓ) / n_b(ℓ); only the share c'_a of *a*'s acquisitions made
//!   while *b* ran can: E_ab = c'_a Σ_ℓ n_a(ℓ) · U_b(ℓ) · h_b(ℓ) / 2 / T_a.
//!
//! The isolation score of a pair is 100 × (1 − E), E the median over both
//! directions and every run, with its interval (see [`crate::stats`]): 100
//! is no time lost to the other workload at all.

use std::collections::HashMap;

use lockscope_trace::{Holder, Mode, Trace};
use serde::Serialize;

use crate::analyze::LockSummary;

/// The isolation score of an exposure: 100 × (1 − E), 100 for none.
pub fn isolation_score(exposure: f64) -> f64 {
    100.0 * (1.0 - exposure.min(1.0))
}

/// How an exposure was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// Waits measured and attributed to their holder (contention mode).
    Measured,
    /// Expected from hold times (acquire mode).
    Expected,
}

/// The exposure of one workload to another in one trace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Exposure {
    pub waiter: String,
    pub holder: String,
    /// The share of the waiter's run time lost to the holder.
    pub exposure: f64,
    pub basis: Basis,
}

/// Per lock (address and generation) and workload: acquisitions, waits and holds.
type Uses = HashMap<(u64, u32), HashMap<u32, (u64, u64, u64)>>;

fn uses_of(locks: &[LockSummary]) -> Uses {
    let mut uses: Uses = HashMap::new();
    for l in locks {
        for u in &l.uses {
            let e = uses.entry((l.addr, l.generation)).or_default().entry(u.workload).or_default();
            e.0 += u.acquisitions;
            e.1 += u.wait_total_ns;
            e.2 += u.hold_total_ns;
        }
    }
    uses
}

/// Per lock address (its generations together: a holder's waits do not
/// know theirs), each workload's acquisitions.
type Acquisitions = HashMap<u64, HashMap<u32, u64>>;

/// Every ordered pair of workloads' exposure (waiter ≠ holder); waits made
/// while serving an interrupt count only when `include_interrupt`.
pub fn exposures(trace: &Trace, locks: &[LockSummary], include_interrupt: bool) -> Vec<Exposure> {
    let uses = uses_of(locks);
    let mut by_address: Acquisitions = HashMap::new();
    for (&(addr, _), by) in &uses {
        for (&w, u) in by {
            *by_address.entry(addr).or_default().entry(w).or_default() += u.0;
        }
    }
    let holds_recorded = uses.values().flat_map(|m| m.values()).any(|&(_, _, h)| h > 0);
    let basis = match trace.meta.mode {
        Mode::Acquire if holds_recorded => Basis::Expected,
        _ => Basis::Measured,
    };
    let workloads = &trace.meta.workloads;
    let mut out = vec![];
    for a in workloads.iter().filter(|w| w.run_time_ns > 0) {
        let alongside_a: Alongside = workloads.iter().map(|w| (w.id, w.share_alongside(a))).collect();
        for b in workloads.iter().filter(|b| b.id != a.id && b.run_time_ns > 0) {
            let lost_ns = match basis {
                Basis::Measured => measured_ns(trace, include_interrupt, &uses, &by_address, &alongside_a, a.id, b.id),
                Basis::Expected => a.share_alongside(b) * expected_ns(&uses, a.id, b.id, b.run_time_ns as f64),
            };
            out.push(Exposure { waiter: a.name.clone(), holder: b.name.clone(), exposure: lost_ns / a.run_time_ns as f64, basis });
        }
    }
    out
}

/// Per workload, the share of its run time during which the waiter ran too.
type Alongside = HashMap<u32, f64>;

/// `b`'s share of the acquisitions of a lock made while the waiter ran,
/// given each workload's acquisitions (each assumed spread evenly over its run).
fn share_of(by: Option<&HashMap<u32, u64>>, alongside: &Alongside, b: u32) -> f64 {
    let Some(by) = by else { return 0.0 };
    let made_alongside = |w: u32, n: u64| n as f64 * alongside.get(&w).copied().unwrap_or(1.0);
    let all: f64 = by.iter().map(|(&w, &n)| made_alongside(w, n)).sum();
    match by.get(&b) {
        Some(&n) if all > 0.0 => made_alongside(b, n) / all,
        _ => 0.0,
    }
}

/// Waits of `a` attributed to `b`, and its waits of unknown holder shared by
/// acquisitions. A trace without holders (older, or not contention mode)
/// shares every wait so.
fn measured_ns(
    trace: &Trace,
    include_interrupt: bool,
    uses: &Uses,
    by_address: &Acquisitions,
    alongside_a: &Alongside,
    a: u32,
    b: u32,
) -> f64 {
    if trace.held_waits.is_empty() {
        return uses
            .values()
            .filter_map(|by| {
                let acquisitions: HashMap<u32, u64> = by.iter().map(|(&w, u)| (w, u.0)).collect();
                by.get(&a).map(|u| u.1 as f64 * share_of(Some(&acquisitions), alongside_a, b))
            })
            .sum();
    }
    trace
        .held_waits
        .iter()
        .filter(|w| w.waiter == a && (include_interrupt || !w.in_interrupt))
        .map(|w| match w.holder {
            Holder::Workload(h) if h == b => w.wait_total_ns as f64,
            Holder::Unknown => w.wait_total_ns as f64 * share_of(by_address.get(&w.lock_addr), alongside_a, b),
            _ => 0.0,
        })
        .sum()
}

/// The waits `a` can expect from `b`'s holds: per lock, n_a · U_b · h_b / 2.
fn expected_ns(uses: &Uses, a: u32, b: u32, b_run_ns: f64) -> f64 {
    uses.values()
        .filter_map(|by| {
            let (&(n_a, _, _), &(n_b, _, hold_b)) = (by.get(&a)?, by.get(&b)?);
            (n_b > 0).then(|| n_a as f64 * (hold_b as f64 / b_run_ns) * (hold_b as f64 / n_b as f64) / 2.0)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::analyze;
    use crate::fixtures::{record, trace, workload, OPTIONS};
    use lockscope_trace::{HeldWait, Workload};

    fn of<'a>(e: &'a [Exposure], waiter: &str) -> &'a Exposure {
        e.iter().find(|x| x.waiter == waiter).unwrap()
    }

    #[test]
    fn measured_waits_count_when_the_other_held_the_lock() {
        let t = trace();
        let a = analyze(&t, &OPTIONS);
        let lock = a.locks.iter().find(|l| l.shared).unwrap();
        let wait = |holder, ns| HeldWait { waiter: 1, holder, lock_addr: lock.addr, count: 1, wait_total_ns: ns, in_interrupt: false };
        let w2_share = lock.uses[1].acquisitions as f64 / (lock.uses[0].acquisitions + lock.uses[1].acquisitions) as f64;
        let in_interrupt = HeldWait { in_interrupt: true, ..wait(Holder::Workload(2), 5_000_000) };
        let t = Trace {
            held_waits: vec![
                wait(Holder::Workload(2), 2_000_000),
                wait(Holder::Workload(1), 9_000_000),
                wait(Holder::Unknown, 1_000_000),
                in_interrupt,
            ],
            ..t
        };
        let e = exposures(&t, &a.locks, false);
        // w1 ran 10 s: 2 ms held by w2, plus w2's share of 1 ms whose holder
        // is unknown; its own 9 ms do not count, nor 5 ms an interrupt waited.
        let expected = (2e6 + 1e6 * w2_share) / 10e9;
        assert!((of(&e, "w1").exposure - expected).abs() < 1e-15, "{e:?}");
        assert_eq!(of(&e, "w2").exposure, 0.0, "w2 waited on nothing w1 held");
        assert_eq!(of(&e, "w1").basis, Basis::Measured);
        let with_interrupts = exposures(&t, &a.locks, true);
        assert!((of(&with_interrupts, "w1").exposure - (expected + 5e6 / 10e9)).abs() < 1e-15, "{with_interrupts:?}");
    }

    #[test]
    fn waits_of_unknown_holder_go_only_to_workloads_that_ran_meanwhile() {
        // A stress trace of two runs: w1 and w2 ran together over 0-10 s, w3
        // after them (20-30 s), half of w4's run overlapped w1's.
        let mut t = trace();
        let lock = 0xffffffff82000010;
        let at = |w: Workload, start_s: u64| Workload { started_ns: Some(start_s * 1_000_000_000), ..w };
        t.meta.workloads =
            vec![at(workload(1, "w1", 10), 0), at(workload(2, "w2", 10), 0), at(workload(3, "w3", 10), 20), at(workload(4, "w4", 10), 5)];
        t.records = vec![record(1, lock, 0, 100, 1), record(2, lock, 0, 100, 1), record(3, lock, 0, 1000, 1), record(4, lock, 0, 100, 1)];
        t.held_waits =
            vec![HeldWait { waiter: 1, holder: Holder::Unknown, lock_addr: lock, count: 1, wait_total_ns: 2_500_000, in_interrupt: false }];
        let e = exposures(&t, &analyze(&t, &OPTIONS).locks, false);
        let lost_to = |holder: &str| e.iter().find(|x| x.waiter == "w1" && x.holder == holder).unwrap().exposure * 10e9;
        // Acquisitions made while w1 ran: w1 100, w2 100, w3 none, w4 50 of its 100.
        assert!((lost_to("w2") - 2.5e6 * 100.0 / 250.0).abs() < 1e-6, "{e:?}");
        assert_eq!(lost_to("w3"), 0.0, "w3 never ran beside w1: {e:?}");
        assert!((lost_to("w4") - 2.5e6 * 50.0 / 250.0).abs() < 1e-6, "{e:?}");
    }

    #[test]
    fn expected_waits_count_only_while_both_ran() {
        let mut t = trace();
        t.meta.mode = Mode::Acquire;
        t.records.iter_mut().for_each(|r| r.hold_total_ns = r.count * 1_000);
        let together = exposures(&t, &analyze(&t, &OPTIONS).locks, false);
        // w2 (5 s) ran over the last 5 s of w1's 10: half of w1's acquisitions met it.
        t.meta.workloads[0].started_ns = Some(0);
        t.meta.workloads[1].started_ns = Some(5_000_000_000);
        let half = exposures(&t, &analyze(&t, &OPTIONS).locks, false);
        assert_eq!(of(&together, "w1").basis, Basis::Expected);
        assert!(of(&together, "w1").exposure > 0.0);
        assert!((of(&half, "w1").exposure - of(&together, "w1").exposure / 2.0).abs() < 1e-15, "{half:?} {together:?}");
        assert_eq!(of(&half, "w2").exposure, of(&together, "w2").exposure, "all of w2's run was beside w1");
        t.meta.workloads[1].started_ns = Some(10_000_000_000);
        assert!(exposures(&t, &analyze(&t, &OPTIONS).locks, false).iter().all(|e| e.exposure == 0.0), "w2 started as w1 ended");
    }

    #[test]
    fn expected_waits_come_from_the_other_s_holds() {
        let mut uses: Uses = HashMap::new();
        // Lock 1: a takes it 1000 times; b holds it 100 times for 1 ms in all over its 1 s.
        uses.entry((1, 0)).or_default().extend([(1, (1000, 0, 0)), (2, (100, 0, 1_000_000))]);
        // Lock 2: only a.
        uses.entry((2, 0)).or_default().insert(1, (50, 0, 5_000));
        // 1000 × (1 ms / 1 s) × (10 µs / 2) = 5 µs.
        assert!((expected_ns(&uses, 1, 2, 1e9) - 5_000.0).abs() < 1e-6);
        assert_eq!(expected_ns(&uses, 2, 1, 1e9), 0.0, "a held nothing b took");
    }
}
