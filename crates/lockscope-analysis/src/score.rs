//! The isolation score: how much of a workload's run time goes to meeting
//! another workload in a kernel lock.
//!
//! For a workload *a* beside a workload *b*, the *exposure* of *a* to *b* is
//! the share of *a*'s run time T_a spent waiting because *b* held a lock:
//!
//! * contention mode (the meetings that happened): the waits of *a* the
//!   lock word attributes to *b* (mutexes, writer-held rwsems), plus, for each
//!   lock whose holder the word does not name (spinlocks), *a*'s waits on it
//!   times *b*'s share of the lock's recorded acquisitions:
//!   E_ab = (Σ W_a←b + Σ_ℓ W_a?(ℓ) · n_b(ℓ) / Σ_w n_w(ℓ)) / T_a;
//! * acquire mode (the chances of meeting): each acquisition of a lock ℓ by
//!   *a* finds it held by *b* with probability U_b(ℓ) = H_b(ℓ) / T_b (*b*'s
//!   hold time over its run time) and then waits half of *b*'s mean hold
//!   h_b(ℓ) = H_b(ℓ) / n_b(ℓ): E_ab = Σ_ℓ n_a(ℓ) · U_b(ℓ) · h_b(ℓ) / 2 / T_a.
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
        for b in workloads.iter().filter(|b| b.id != a.id && b.run_time_ns > 0) {
            let lost_ns = match basis {
                Basis::Measured => measured_ns(trace, include_interrupt, &uses, &by_address, a.id, b.id),
                Basis::Expected => expected_ns(&uses, a.id, b.id, b.run_time_ns as f64),
            };
            out.push(Exposure { waiter: a.name.clone(), holder: b.name.clone(), exposure: lost_ns / a.run_time_ns as f64, basis });
        }
    }
    out
}

/// `b`'s share of the acquisitions of a lock, given each workload's.
fn share_of(by: Option<&HashMap<u32, u64>>, b: u32) -> f64 {
    let Some(by) = by else { return 0.0 };
    let all: u64 = by.values().sum();
    match all {
        0 => 0.0,
        _ => by.get(&b).copied().unwrap_or(0) as f64 / all as f64,
    }
}

/// Waits of `a` attributed to `b`, and its waits of unknown holder shared by
/// acquisitions. A trace without holders (older, or not contention mode)
/// shares every wait so.
fn measured_ns(trace: &Trace, include_interrupt: bool, uses: &Uses, by_address: &Acquisitions, a: u32, b: u32) -> f64 {
    if trace.held_waits.is_empty() {
        return uses
            .values()
            .filter_map(|by| {
                let acquisitions: HashMap<u32, u64> = by.iter().map(|(&w, u)| (w, u.0)).collect();
                by.get(&a).map(|u| u.1 as f64 * share_of(Some(&acquisitions), b))
            })
            .sum();
    }
    trace
        .held_waits
        .iter()
        .filter(|w| w.waiter == a && (include_interrupt || !w.in_interrupt))
        .map(|w| match w.holder {
            Holder::Workload(h) if h == b => w.wait_total_ns as f64,
            Holder::Unknown => w.wait_total_ns as f64 * share_of(by_address.get(&w.lock_addr), b),
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
    use crate::fixtures::{trace, OPTIONS};
    use lockscope_trace::HeldWait;

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
