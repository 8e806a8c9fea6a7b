//! Offset → member path on the real BTF of the running kernel
//! (/sys/kernel/btf/vmlinux): embedded structs, arrays, anonymous unions,
//! and a slab lock named from its cache's geometry.

use lockscope_naming::btf::{Btf, TypeId};
use lockscope_naming::{globals, lock_at, percpu, slab};
use lockscope_trace::{Confidence, LockKind, SlabCache};

fn vmlinux() -> Btf {
    Btf::vmlinux().expect("this kernel exposes its BTF (CONFIG_DEBUG_INFO_BTF)")
}

fn struct_id(btf: &Btf, name: &str) -> TypeId {
    *btf.structs_named(name).first().unwrap_or_else(|| panic!("struct {name} in BTF"))
}

/// The lock the path names is found again from its offset, as itself.
fn round_trip(btf: &Btf, object: &str, path: &str, kind: LockKind) {
    let id = struct_id(btf, object);
    let offset = btf.offset_of(id, path).unwrap_or_else(|| panic!("{object}.{path} in BTF"));
    assert_eq!(lock_at(btf, id, offset, kind).as_deref(), Some(path), "{object} at {offset}");
}

#[test]
fn locks_inside_embedded_structs_are_named_by_their_whole_path() {
    let btf = vmlinux();
    round_trip(&btf, "bdev_inode", "vfs_inode.i_data.i_private_lock", LockKind::Spinlock);
    round_trip(&btf, "inode", "i_rwsem", LockKind::RwsemWrite);
    round_trip(&btf, "mm_struct", "mmap_lock", LockKind::RwsemRead);
    round_trip(&btf, "rq", "__lock", LockKind::Spinlock);
    round_trip(&btf, "pipe_inode_info", "mutex", LockKind::Mutex);
}

#[test]
fn array_elements_are_indexed() {
    let btf = vmlinux();
    round_trip(&btf, "pglist_data", "node_zones[1].lock", LockKind::Spinlock);
    let pgdat = struct_id(&btf, "pglist_data");
    let zone = struct_id(&btf, "zone");
    let second_zone = btf.offset_of(pgdat, "node_zones").unwrap() + btf.size_of(zone);
    assert_eq!(btf.offset_of(pgdat, "node_zones[1]"), Some(second_zone));
}

#[test]
fn anonymous_unions_are_looked_through() {
    let btf = vmlinux();
    // spinlock_t is `struct spinlock { union { struct raw_spinlock rlock; }; }`.
    let spinlock = struct_id(&btf, "spinlock");
    assert_eq!(btf.offset_of(spinlock, "rlock"), Some(0));
    assert_eq!(lock_at(&btf, spinlock, 0, LockKind::Spinlock).as_deref(), Some("rlock"));
}

#[test]
fn a_lock_of_another_kind_or_no_lock_is_not_named() {
    let btf = vmlinux();
    let bdev = struct_id(&btf, "bdev_inode");
    let offset = btf.offset_of(bdev, "vfs_inode.i_data.i_private_lock").unwrap();
    assert_eq!(lock_at(&btf, bdev, offset, LockKind::Mutex), None);
    assert_eq!(lock_at(&btf, bdev, offset + 1, LockKind::Spinlock), None, "inside a lock is not a lock");
}

#[test]
fn a_lock_in_a_bdev_cache_slab_is_named_from_the_cache_geometry() {
    let btf = vmlinux();
    let bdev = struct_id(&btf, "bdev_inode");
    let object_size = btf.size_of(bdev);
    let cache = SlabCache {
        name: "bdev_cache".into(),
        slot_size: object_size.next_multiple_of(64),
        object_size,
        red_left_pad: 0,
        order: 3,
        min_order: 3,
    };
    let offset = btf.offset_of(bdev, "vfs_inode.i_data.i_private_lock").unwrap() as u64;
    let slab = 0xffff_8881_0048_0000u64; // 32 KiB aligned: an order-3 slab
    let lock = slab + 5 * cache.slot_size as u64 + offset;
    let mut namer = slab::SlabNamer::default();
    let name = namer.name(&btf, lock, &cache, None, LockKind::Spinlock, Some("find_get_block_common")).unwrap();
    assert_eq!((name.object.as_str(), name.member.as_str()), ("bdev_inode", "vfs_inode.i_data.i_private_lock"));
    assert_ne!(name.confidence, Confidence::Ambiguous, "{name:?}");
    let err = namer.name(&btf, lock + 1, &cache, None, LockKind::Spinlock, None).unwrap_err();
    assert!(err.contains("no struct that bdev_cache holds has a spinlock"), "{err}");
    // A slab whose start the recorder read from its page need not be aligned
    // as its order says: the same lock in one starting a page further on
    // (the same place, named again from what the namer found the first time).
    let moved = lock + 4096;
    let unaligned = namer.name(&btf, moved, &cache, Some(slab + 4096), LockKind::Spinlock, None).unwrap();
    assert_eq!((unaligned.base, unaligned.member.as_str()), (moved - offset, "vfs_inode.i_data.i_private_lock"));
}

#[test]
fn a_lock_in_a_global_is_named_from_its_symbol_and_typed_where_btf_lists_the_variable() {
    let btf = vmlinux();
    // Per-CPU variables are the variables every kernel's BTF lists.
    let rq = btf.variable("runqueues").expect("runqueues is in BTF");
    let offset = btf.offset_of(btf.resolve(rq), "__lock").unwrap() as u64;
    let typed = globals::name_in_global(&btf, "runqueues", offset, LockKind::Spinlock);
    assert_eq!(
        (typed.variable.as_str(), typed.member, typed.confidence),
        ("runqueues", Some(("rq".into(), "__lock".into())), Confidence::Exact)
    );
    // A symbol BTF does not type: the variable itself, or a place inside it.
    let whole = globals::name_in_global(&btf, "no_such_lock", 0, LockKind::Spinlock);
    assert_eq!((whole.variable.as_str(), whole.member, whole.confidence), ("no_such_lock", None, Confidence::Exact));
    let inside = globals::name_in_global(&btf, "no_such_lock", 0x18, LockKind::Mutex);
    assert_eq!((inside.variable.as_str(), inside.confidence), ("no_such_lock+0x18", Confidence::Inferred));
}

#[test]
fn a_lock_in_a_per_cpu_variable_is_named_from_the_cpu_area() {
    let btf = vmlinux();
    let (vars, area) = btf.percpu_variables();
    assert!(area > 0 && vars.len() > 10, "the kernel's BTF lists per-CPU variables");
    let &(_, _, rq_offset, _) = vars.iter().find(|v| v.0 == "runqueues").expect("runqueues is per-CPU");
    let rq = struct_id(&btf, "rq");
    let lock_offset = btf.offset_of(rq, "__lock").unwrap() as u64;
    // Two CPUs' areas; the lock of the second CPU's runqueue.
    let (cpu0, cpu1) = (0xffff_8886_27a0_0000u64, 0xffff_8886_27b0_0000u64);
    let runqueues = [cpu0 + rq_offset as u64, cpu1 + rq_offset as u64];
    let lock = cpu1 + rq_offset as u64 + lock_offset;
    let name = percpu::name_in_percpu(&btf, lock, &runqueues, LockKind::Spinlock).expect("named");
    assert_eq!((name.variable.as_str(), name.object.as_deref(), name.member.as_str()), ("runqueues", Some("rq"), "__lock"));
    assert_eq!(percpu::name_in_percpu(&btf, lock, &[0, 0], LockKind::Spinlock), None, "no CPU area known");
    assert_eq!(percpu::name_in_percpu(&btf, cpu1 + area as u64 + 8, &runqueues, LockKind::Spinlock), None, "past the static variables");
}

#[test]
fn the_naming_sources_follow_the_kernel_version() {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut numbers = release.trim().split(['.', '-']).map(|n| n.parse::<u32>().unwrap_or(0));
    let version = (numbers.next().unwrap(), numbers.next().unwrap());
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap();
    let btf = vmlinux();
    let symbols = lockscope_trace::SymbolTable::parse(&kallsyms).unwrap();
    let sources = lockscope_naming::sources(&btf, &symbols);
    if version >= (6, 13) {
        assert_eq!(sources.slab_by, Some("bpf_get_kmem_cache"), "the kfunc came with 6.13 ({release})");
    }
    // Slab pages lost PG_slab in 6.10; from 6.12 their page type says so.
    assert_eq!(btf.has_enumerator("pageflags", "PG_slab"), version < (6, 10), "{release}");
    assert_eq!(btf.has_enumerator("pagetype", "PGTY_slab"), version >= (6, 12), "{release}");
    assert!(btf.has_enumerator("pageflags", "PG_locked"), "every kernel has PG_locked");
    assert!(sources.percpu, "runqueues is a per-CPU variable in BTF");
    assert_eq!(sources.globals, symbols.has_data_symbols());
    // Without kallsyms, only the kfunc can tell a slab.
    assert_eq!(lockscope_naming::sources(&btf, &Default::default()).slab, btf.has_function("bpf_get_kmem_cache"));
}

#[test]
fn a_lock_is_spelled_from_each_struct_it_is_embedded_in() {
    let btf = vmlinux();
    let bdev = struct_id(&btf, "bdev_inode");
    assert_eq!(
        lockscope_naming::spellings(&btf, bdev, "vfs_inode.i_data.i_private_lock"),
        ["bdev_inode.vfs_inode.i_data.i_private_lock", "inode.i_data.i_private_lock", "address_space.i_private_lock"]
    );
    let pgdat = struct_id(&btf, "pglist_data");
    // By the struct's typedef too: the source often says pg_data_t.
    assert_eq!(
        lockscope_naming::spellings(&btf, pgdat, "node_zones[1].lock"),
        ["pglist_data.node_zones[1].lock", "pg_data_t.node_zones[1].lock", "zone.lock"]
    );
}
