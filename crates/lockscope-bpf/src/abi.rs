//! What user space shares with the BPF programs, as libbpf-cargo generates
//! it from the programs' BTF (src/bpf/lockscope.bpf.h): the aggregation key
//! and value, the cgroup targets, the counters and lockscope's flags. Nothing
//! here is a copy kept by hand; a change on the C side changes these types
//! or fails the build.

use std::collections::BTreeMap;

use lockscope_trace::{Counters, HeldWait, Holder, LockPlace, LockRecord, SlabCache};

use crate::contention_skel::types::{
    agg_key, agg_val, cache_info, cgroup_target, counter, holder_key, holder_val, lks_flag, lock_place, place_key,
};

// Both objects include the same header; their generated types must agree.
const _: () = {
    use crate::acquire_skel::types as acquire;
    assert!(size_of::<agg_key>() == size_of::<acquire::agg_key>());
    assert!(size_of::<agg_val>() == size_of::<acquire::agg_val>());
    assert!(size_of::<cgroup_target>() == size_of::<acquire::cgroup_target>());
    assert!(counter::NR_COUNTERS.0 == acquire::counter::NR_COUNTERS.0);
};

/// Entries of the per-CPU `counters` array.
pub const NR_COUNTERS: usize = counter::NR_COUNTERS.0 as usize;

/// The field of [`Counters`] a kernel counter fills.
type Field = fn(&mut Counters) -> &mut u64;

/// The trace counter each kernel counter fills. Its length is the C enum's:
/// a counter added on one side and not the other fails the build.
const KERNEL_COUNTERS: [(counter, Field); NR_COUNTERS] = [
    (counter::C_EVENTS, |c| &mut c.events),
    (counter::C_MAP_FULL, |c| &mut c.map_full),
    (counter::C_MAP_BUSY, |c| &mut c.map_busy),
    (counter::C_STACKS_FULL, |c| &mut c.stacks_full),
    (counter::C_STACK_ERROR, |c| &mut c.stack_errors),
    (counter::C_STATE_BUSY, |c| &mut c.state_busy),
    (counter::C_NESTING_OVERFLOW, |c| &mut c.nesting_overflow),
    (counter::C_UNMATCHED_END, |c| &mut c.unmatched_end),
    (counter::C_TRACK_FULL, |c| &mut c.track_full),
    (counter::C_REENTERED, |c| &mut c.reentered),
    (counter::C_FREED_LOCKS, |c| &mut c.freed_locks),
    (counter::C_UNSIZED_FREES, |c| &mut c.unsized_frees),
    (counter::C_PLACES_FULL, |c| &mut c.places_full),
    (counter::C_HOLDERS_FULL, |c| &mut c.holders_full),
    (counter::C_HOLDER_RELEASED, |c| &mut c.holder_released),
    (counter::C_HOLDER_UNSEEN, |c| &mut c.holder_unseen),
    (counter::C_HOLDER_AMBIGUOUS, |c| &mut c.holder_ambiguous),
];

/// The index of the events counter (progress displays read it while recording).
pub const EVENTS: u32 = counter::C_EVENTS.0;

/// The kernel's counters, summed over CPUs and indexed as the C enum. The
/// counters user space computes (interrupt context, recursion) start at zero.
pub fn counters_from(values: &[u64; NR_COUNTERS]) -> Counters {
    let mut counters = Counters::default();
    for (which, field) in KERNEL_COUNTERS {
        *field(&mut counters) = values[which.0 as usize];
    }
    counters
}

/// A value of a map whose BTF type is `T`, from the bytes libbpf hands over.
fn read<T: Copy>(bytes: &[u8]) -> T {
    assert_eq!(bytes.len(), size_of::<T>(), "map entry size is not that of its BTF type");
    // SAFETY: T is one of the generated plain structs of integers (any bit
    // pattern is valid) and `bytes` holds exactly one; read_unaligned copies
    // it out whatever the buffer's alignment.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

fn bytes_of<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: the generated structs are #[repr(C)] integers without padding
    // bytes left uninitialised (their fields fill them), viewed as bytes.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

const INTERRUPT: u32 = lks_flag::LKS_F_INTERRUPT.0;
const SAMPLE: u32 = lks_flag::LKS_F_SAMPLE.0;

/// Whether an aggregation map key is a sampled stack's.
pub fn is_sample(key: &[u8]) -> bool {
    read::<agg_key>(key).flags & SAMPLE != 0
}

/// A record from an aggregation map entry.
pub fn record(key: &[u8], value: &[u8]) -> LockRecord {
    let (k, v): (agg_key, agg_val) = (read(key), read(value));
    LockRecord {
        workload: k.workload,
        tgid: k.tgid,
        lock_addr: k.lock,
        flags: k.flags & !(INTERRUPT | SAMPLE),
        stack_id: k.stack_id,
        generation: k.generation,
        count: v.count,
        wait_total_ns: v.wait_total_ns,
        wait_max_ns: v.wait_max_ns,
        hold_total_ns: v.hold_total_ns,
        hold_max_ns: v.hold_max_ns,
        failed_trylocks: v.failed,
        first_ns: v.first_ns,
        in_interrupt: k.flags & INTERRUPT != 0,
    }
}

/// A `cgroup_targets` entry, as bytes for the map.
pub fn cgroup_target(id: u64, level: u32, workload: u32) -> Vec<u8> {
    bytes_of(&cgroup_target { id, level, workload }).to_vec()
}

/// A `cache_infos` entry: a slab cache's address and geometry.
pub fn slab_cache(key: &[u8], value: &[u8]) -> (u64, SlabCache) {
    let info: cache_info = read(value);
    let name: Vec<u8> = info.name.iter().map(|&c| c as u8).take_while(|&c| c != 0).collect();
    let cache = SlabCache {
        name: String::from_utf8_lossy(&name).into_owned(),
        slot_size: info.size,
        object_size: info.object_size,
        red_left_pad: info.red_left_pad,
        order: info.order,
        min_order: info.min_order,
    };
    (u64_from(key), cache)
}

/// A `lock_places` entry: where the lock at its key lives, its cache's
/// geometry from `caches` (the `cache_infos` entries).
pub fn lock_place(key: &[u8], value: &[u8], caches: &BTreeMap<u64, SlabCache>) -> LockPlace {
    let place: lock_place = read(value);
    let slab = caches.get(&place.cache).cloned();
    // The programs note a slab's start only with its cache.
    let key: place_key = read(key);
    LockPlace { lock_addr: key.lock, generation: key.generation, slab_start: (place.slab_start != 0).then_some(place.slab_start), slab }
}

/// A `holder_waits` entry: a workload's waits on a lock while `holder` held it.
/// The programs know a holder's workload where they follow its process by
/// tgid; `workload_of` places the others (processes followed by cgroup).
pub fn held_wait(key: &[u8], value: &[u8], workload_of: impl Fn(u32) -> Option<u32>) -> HeldWait {
    let (k, v): (holder_key, holder_val) = (read(key), read(value));
    let holder = match (k.holder.workload, k.holder.tgid) {
        (_, 0) => Holder::Unknown,
        (0, tgid) => workload_of(tgid).map_or(Holder::Other { tgid }, Holder::Workload),
        (w, _) => Holder::Workload(w),
    };
    HeldWait {
        waiter: k.waiter,
        holder,
        lock_addr: k.lock,
        count: v.count,
        wait_total_ns: v.wait_total_ns,
        in_interrupt: k.flags & INTERRUPT != 0,
    }
}

/// A u64 map key or value.
pub fn u64_from(bytes: &[u8]) -> u64 {
    read(bytes)
}

/// A u32 map key or value.
pub fn u32_from(bytes: &[u8]) -> u32 {
    read(bytes)
}

/// Sums a per-CPU u64 value.
pub fn sum_percpu(values: &[Vec<u8>]) -> u64 {
    values.iter().map(|v| read::<u64>(v)).sum()
}

/// The frames of a `stacks` entry, up to its first empty one.
pub fn frames(bytes: &[u8]) -> Vec<u64> {
    bytes.chunks_exact(8).map(read::<u64>).take_while(|&ip| ip != 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_counter_fills_its_own_trace_counter() {
        let values: [u64; NR_COUNTERS] = std::array::from_fn(|i| 100 + i as u64);
        let counters = counters_from(&values);
        let mut filled: Vec<u64> = counters.named().iter().map(|&(_, v)| v).filter(|&v| v >= 100).collect();
        filled.sort();
        assert_eq!(filled, values, "each kernel counter lands in one trace counter, none twice");
        assert_eq!(counters.events, values[EVENTS as usize]);
    }

    #[test]
    fn aggregation_entries_read_field_by_field() {
        let key = agg_key { workload: 2, tgid: 77, lock: 0xffff_8880_0000_1000, flags: 1 | INTERRUPT, stack_id: -1, generation: 3, pad: 0 };
        let value = agg_val { count: 5, wait_total_ns: 6, wait_max_ns: 7, hold_total_ns: 8, hold_max_ns: 9, failed: 10, first_ns: 11 };
        let r = record(bytes_of(&key), bytes_of(&value));
        assert_eq!((r.workload, r.tgid, r.lock_addr, r.flags, r.stack_id, r.generation), (2, 77, 0xffff_8880_0000_1000, 1, -1, 3));
        assert_eq!(
            (r.count, r.wait_total_ns, r.wait_max_ns, r.hold_total_ns, r.hold_max_ns, r.failed_trylocks, r.first_ns),
            (5, 6, 7, 8, 9, 10, 11)
        );
        assert!(r.in_interrupt);
        assert!(!is_sample(bytes_of(&key)));
        assert_eq!(frames(&[1u64.to_ne_bytes(), 2u64.to_ne_bytes(), [0; 8], 4u64.to_ne_bytes()].concat()), [1, 2]);
    }

    #[test]
    fn a_lock_place_gets_its_cache_s_geometry_noted_once_per_cache() {
        let mut name = [0; 32];
        for (to, from) in name.iter_mut().zip(b"ext4_inode_cache") {
            *to = *from as _;
        }
        let info = cache_info { name, size: 1176, object_size: 1160, red_left_pad: 0, order: 3, min_order: 0 };
        let caches: BTreeMap<u64, SlabCache> = [slab_cache(&0xffff_8880_0100_0000u64.to_ne_bytes(), bytes_of(&info))].into();
        let key = place_key { lock: 0xffff_8880_0200_0040, generation: 2, pad: 0 };
        let in_cache = lock_place { cache: 0xffff_8880_0100_0000, slab_start: 0xffff_8880_0200_0000 };
        let p = lock_place(bytes_of(&key), bytes_of(&in_cache), &caches);
        assert_eq!((p.lock_addr, p.generation, p.slab_start), (0xffff_8880_0200_0040, 2, Some(0xffff_8880_0200_0000)));
        let slab = p.slab.expect("the cache's geometry");
        assert_eq!((slab.name.as_str(), slab.slot_size, slab.object_size, slab.order), ("ext4_inode_cache", 1176, 1160, 3));
        // A lock in no slab object, and one whose cache's geometry was not kept (counted as places_full).
        for cache in [0, 0xffff_8880_0300_0000] {
            let p = lock_place(bytes_of(&key), bytes_of(&lock_place { cache, slab_start: 0 }), &caches);
            assert!(p.slab.is_none() && p.slab_start.is_none());
        }
    }
}
