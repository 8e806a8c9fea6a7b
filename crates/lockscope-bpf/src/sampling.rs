//! Stack sampling (`record --stack-sample N`): the kernel counts every
//! acquisition exactly in a stackless aggregate per lock and process, and
//! counts sampled stacks apart. Here the exact figures are shared out over the
//! sampled stacks, in proportion to their samples, so every record again has
//! a stack and the per-lock sums stay exact.

use std::collections::BTreeMap;

use lockscope_trace::LockRecord;

/// Acquisitions of a lock by a process whose stacks are all recorded before
/// sampling begins: locks taken a few times keep every call site.
pub const FIRST_STACKS: u32 = 16;

/// What identifies a lock use apart from its stack.
type UseKey = (u32, u32, u64, u32, u32, bool);

fn use_key(r: &LockRecord) -> UseKey {
    (r.workload, r.tgid, r.lock_addr, r.generation, r.flags, r.in_interrupt)
}

/// One record per sampled stack of each exact record, carrying its share of
/// the exact counts and times; exact records without samples are kept as
/// they are, and so are samples without an exact record (their counts are
/// then sample counts).
pub fn apportion(exact: Vec<LockRecord>, samples: Vec<LockRecord>) -> Vec<LockRecord> {
    let mut by_use: BTreeMap<UseKey, Vec<LockRecord>> = BTreeMap::new();
    for s in samples {
        by_use.entry(use_key(&s)).or_default().push(s);
    }
    let mut out = Vec::with_capacity(exact.len());
    for e in exact {
        let Some(samples) = by_use.remove(&use_key(&e)) else {
            out.push(e);
            continue;
        };
        let weights: Vec<u64> = samples.iter().map(|s| s.count).collect();
        let count = shares(e.count, &weights);
        let hold = shares(e.hold_total_ns, &weights);
        let wait = shares(e.wait_total_ns, &weights);
        let failed = shares(e.failed_trylocks, &weights);
        for (i, s) in samples.iter().enumerate() {
            out.push(LockRecord {
                stack_id: s.stack_id,
                count: count[i],
                hold_total_ns: hold[i],
                wait_total_ns: wait[i],
                failed_trylocks: failed[i],
                first_ns: s.first_ns,
                ..e.clone()
            });
        }
    }
    out.extend(by_use.into_values().flatten());
    out
}

/// `total` split in proportion to `weights`, by largest remainder: the shares
/// add up to `total` exactly.
fn shares(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|&w| w as u128).sum();
    if sum == 0 {
        return weights.iter().enumerate().map(|(i, _)| if i == 0 { total } else { 0 }).collect();
    }
    let exact: Vec<(u64, u128)> = weights
        .iter()
        .map(|&w| {
            let scaled = total as u128 * w as u128;
            ((scaled / sum) as u64, scaled % sum)
        })
        .collect();
    let mut out: Vec<u64> = exact.iter().map(|&(q, _)| q).collect();
    let left = total - out.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| exact[b].1.cmp(&exact[a].1).then(a.cmp(&b)));
    for &i in order.iter().take(left as usize) {
        out[i] += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(lock_addr: u64, stack_id: i32, count: u64) -> LockRecord {
        LockRecord {
            workload: 1,
            tgid: 10,
            lock_addr,
            generation: 0,
            flags: 1,
            stack_id,
            count,
            wait_total_ns: 0,
            wait_max_ns: 0,
            hold_total_ns: count * 100,
            hold_max_ns: 500,
            failed_trylocks: 0,
            first_ns: 7,
            in_interrupt: false,
        }
    }

    #[test]
    fn shares_add_up_to_the_total() {
        assert_eq!(shares(10, &[1, 1, 1]), [4, 3, 3]);
        assert_eq!(shares(1000, &[30, 10]), [750, 250]);
        assert_eq!(shares(5, &[0, 0]), [5, 0]);
        assert_eq!(shares(u64::MAX, &[u64::MAX, 1]).iter().map(|&s| s as u128).sum::<u128>(), u64::MAX as u128);
    }

    #[test]
    fn exact_counts_are_shared_over_the_sampled_stacks() {
        let exact = vec![record(0xa0, -1, 1000), record(0xb0, -1, 3)];
        let mut first = record(0xa0, 4, 30);
        first.first_ns = 9;
        let samples = vec![first, record(0xa0, 5, 10)];
        let out = apportion(exact, samples);
        let a: Vec<_> = out.iter().filter(|r| r.lock_addr == 0xa0).collect();
        assert_eq!(a.iter().map(|r| (r.stack_id, r.count)).collect::<Vec<_>>(), [(4, 750), (5, 250)]);
        assert_eq!(a.iter().map(|r| r.hold_total_ns).sum::<u64>(), 100_000);
        assert_eq!((a[0].first_ns, a[0].hold_max_ns), (9, 500));
        // A lock without samples keeps its stackless record.
        assert!(out.iter().any(|r| r.lock_addr == 0xb0 && r.stack_id == -1 && r.count == 3));
    }

    #[test]
    fn samples_of_another_process_or_generation_are_not_mixed_in() {
        let exact = vec![record(0xa0, -1, 100)];
        let mut other_gen = record(0xa0, 4, 5);
        other_gen.generation = 1;
        let out = apportion(exact, vec![other_gen]);
        assert_eq!(out.len(), 2);
        assert!(out.iter().any(|r| r.generation == 0 && r.stack_id == -1 && r.count == 100));
        assert!(out.iter().any(|r| r.generation == 1 && r.stack_id == 4 && r.count == 5));
    }
}
