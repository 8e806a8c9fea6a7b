//! Byte layouts shared with the BPF programs (see src/bpf/lockscope.bpf.h).

use lockscope_trace::{Counters, LockRecord};

/// Indices of the per-CPU `counters` array, in the order of `enum counter`.
pub const NR_COUNTERS: u32 = 12;

/// The kernel's counters, summed over CPUs, indexed as in the C enum. The
/// counters user space computes (interrupt context, recursion) start at zero.
pub fn counters_from(values: &[u64; NR_COUNTERS as usize]) -> Counters {
    let [events, map_full, map_busy, stacks_full, stack_errors, state_busy, nesting_overflow, unmatched_end, track_full, reentered, freed_locks, unsized_frees] =
        *values;
    Counters {
        events,
        irq_filtered: 0,
        map_full,
        map_busy,
        stacks_full,
        stack_errors,
        state_busy,
        nesting_overflow,
        unmatched_end,
        track_full,
        reentered,
        freed_locks,
        unsized_frees,
        recursion_misses: 0,
    }
}

pub fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
}

pub fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().unwrap())
}

/// `LKS_F_INTERRUPT`: the BPF side saw the acquisition in interrupt context.
pub const FLAG_INTERRUPT: u32 = 1 << 16;
/// `LKS_F_SAMPLE`: the entry counts a sampled stack (see sampling.rs).
pub const FLAG_SAMPLE: u32 = 1 << 17;

/// Whether an aggregation map key is a sampled stack's.
pub fn is_sample(key: &[u8]) -> bool {
    u32_at(key, 16) & FLAG_SAMPLE != 0
}

/// A record from an aggregation map entry: `struct agg_key` and `struct agg_val`.
pub fn record(key: &[u8], value: &[u8]) -> LockRecord {
    assert_eq!((key.len(), value.len()), (32, 56), "agg_key/agg_val layout changed");
    LockRecord {
        workload: u32_at(key, 0),
        tgid: u32_at(key, 4),
        lock_addr: u64_at(key, 8),
        flags: u32_at(key, 16) & !(FLAG_INTERRUPT | FLAG_SAMPLE),
        stack_id: u32_at(key, 20) as i32,
        generation: u32_at(key, 24),
        count: u64_at(value, 0),
        wait_total_ns: u64_at(value, 8),
        wait_max_ns: u64_at(value, 16),
        hold_total_ns: u64_at(value, 24),
        hold_max_ns: u64_at(value, 32),
        failed_trylocks: u64_at(value, 40),
        first_ns: u64_at(value, 48),
        in_interrupt: u32_at(key, 16) & FLAG_INTERRUPT != 0,
    }
}

/// `struct cgroup_target`.
pub fn cgroup_target(id: u64, level: u32, workload: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&id.to_ne_bytes());
    b[8..12].copy_from_slice(&level.to_ne_bytes());
    b[12..].copy_from_slice(&workload.to_ne_bytes());
    b
}

/// Sums a per-CPU u64 value.
pub fn sum_percpu(values: &[Vec<u8>]) -> u64 {
    values.iter().map(|v| u64_at(v, 0)).sum()
}
