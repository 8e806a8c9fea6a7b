//! Byte layouts shared with the BPF programs (see src/bpf/lockscope.bpf.h).

use lockscope_trace::Counters;

/// Indices of the per-CPU `counters` array, in the order of `enum counter`.
pub const NR_COUNTERS: u32 = 9;

/// The kernel's counters, summed over CPUs, indexed as in the C enum. The
/// counters user space computes (interrupt context, recursion) start at zero.
pub fn counters_from(values: &[u64; NR_COUNTERS as usize]) -> Counters {
    let [events, map_full, map_busy, stack_collisions, stack_errors, state_busy, nesting_overflow, unmatched_end, track_full] =
        *values;
    Counters {
        events,
        irq_filtered: 0,
        map_full,
        map_busy,
        stack_collisions,
        stack_errors,
        state_busy,
        nesting_overflow,
        unmatched_end,
        track_full,
        recursion_misses: 0,
    }
}

/// `struct agg_key`.
pub struct AggKey {
    pub workload: u32,
    pub tgid: u32,
    pub lock: u64,
    pub flags: u32,
    pub stack_id: i32,
}

/// `struct agg_val`.
pub struct AggVal {
    pub count: u64,
    pub wait_total_ns: u64,
    pub wait_max_ns: u64,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
}

pub fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().unwrap())
}

impl AggKey {
    pub const SIZE: usize = 24;

    pub fn parse(b: &[u8]) -> AggKey {
        assert_eq!(b.len(), Self::SIZE, "agg_key layout changed");
        AggKey {
            workload: u32_at(b, 0),
            tgid: u32_at(b, 4),
            lock: u64_at(b, 8),
            flags: u32_at(b, 16),
            stack_id: u32_at(b, 20) as i32,
        }
    }
}

impl AggVal {
    pub fn parse(b: &[u8]) -> AggVal {
        assert_eq!(b.len(), 24, "agg_val layout changed");
        AggVal { count: u64_at(b, 0), wait_total_ns: u64_at(b, 8), wait_max_ns: u64_at(b, 16) }
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
