//! Naming from another kernel version's source, on the real thing: a trace
//! from a kernel whose source is not at hand (6.18, like this machine's),
//! against Debian's linux-source-6.12, prepared but not indexed, with the
//! pinned clangd. The locks run-time naming could not name (a global where
//! kallsyms lists no data symbols, a lock in a page of its own) are named
//! from what their call sites' functions take there; a lock named at run
//! time is left to that name.

use lockscope_source::clangd::ready_tree;
use lockscope_source::functions::FunctionIndex;
use lockscope_source::stacks::{infer_unnamed_locks, place_by_function_name};
use lockscope_source::tree::{debian_source_dir, PrepareOptions};
use lockscope_source::SourceTree;
use lockscope_trace::*;

const CSS_SET: u64 = 0xffffffff83000040; // static data
const INODE_HASH: u64 = 0xffffffff83000080;
const VMAP_NODE: u64 = 0xffff888100055820; // a page of its own
const BUFFERS: u64 = 0xffff888100200000; // a slab object, named at run time

fn record(lock_addr: u64, stack_id: i32) -> LockRecord {
    LockRecord {
        workload: 1,
        tgid: 1,
        lock_addr,
        generation: 0,
        flags: lock_flags::SPIN,
        stack_id,
        count: 10,
        wait_total_ns: 100,
        wait_max_ns: 10,
        hold_total_ns: 0,
        hold_max_ns: 0,
        failed_trylocks: 0,
        first_ns: 0,
        in_interrupt: false,
    }
}

/// Each lock taken at its own call site (`function+4`, under `_raw_spin_lock`).
fn trace() -> Trace {
    let calls = [
        ("cgroup_enter_frozen", CSS_SET),
        ("insert_inode_locked", INODE_HASH),
        ("find_unlink_vmap_area", VMAP_NODE),
        ("find_get_block_common", BUFFERS),
    ];
    let text = |addr: u64, name: &str| Symbol { addr, size: 0x100, name: name.into(), module: None, kind: SymbolKind::Text };
    let lock_function = 0xffffffff81000000;
    let at = |i: usize| lock_function + 0x100 * (i as u64 + 1);
    let mut symbols = vec![text(lock_function, "_raw_spin_lock")];
    symbols.extend(calls.iter().enumerate().map(|(i, (function, _))| text(at(i), function)));
    let place = |lock_addr| LockPlace { lock_addr, generation: 0, slab: None, slab_start: None };
    Trace {
        meta: serde_json::from_value(serde_json::json!({
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "lockscope_version": "t", "kernel_release": "6.18.44", "hostname": "h",
            "mode": "contention", "hook": "tp_btf", "attached": [], "notes": [], "started_unix_ns": 0, "ended_unix_ns": 1,
            "end_reason": "duration", "kallsyms_all": false, "workloads": [], "counters": Counters::default(), "files": []
        }))
        .unwrap(),
        records: calls.iter().enumerate().map(|(i, (_, lock))| record(*lock, i as i32)).collect(),
        stacks: (0..calls.len()).map(|i| Stack { id: i as i32, frames: vec![lock_function + 4, at(i) + 4] }).collect(),
        symbols,
        sites: vec![],
        // The buffer lock's slab is left out: its name is what matters here.
        places: [CSS_SET, INODE_HASH, VMAP_NODE, BUFFERS].map(place).into(),
        names: vec![LockName {
            lock_addr: BUFFERS,
            generation: 0,
            by: NameSource::Slab,
            object: Some("bdev_inode".into()),
            member: Some("vfs_inode.i_data.i_private_lock".into()),
            global: None,
            confidence: Confidence::Exact,
            alternatives: vec![],
            spellings: vec![],
        }],
        unnamed: vec![],
        held_waits: vec![],
    }
}

#[test]
fn another_version_s_source_names_what_run_time_naming_could_not() {
    let root = debian_source_dir(DebianKernel::V6_12);
    ready_tree(&root, Some(DebianKernel::V6_12), &PrepareOptions::default(), None, false, |step| eprintln!("6.12: {step}"))
        .expect("linux-source-6.12 installed by setup.sh");
    let functions = FunctionIndex::load(&root).unwrap();
    let mut trace = trace();
    trace.sites = place_by_function_name(&trace, &functions);
    let mut clangd = SourceTree { kernel_src: Some(root), clangd: None }.open(|_| {}).expect("clangd installed by setup.sh");
    let named = infer_unnamed_locks(&mut clangd, &functions, &mut [&mut trace]);
    clangd.shutdown();
    assert_eq!(named.unwrap(), [3], "{:#?}", trace.sites);

    let site = |id: i32| trace.sites.iter().find(|s| s.stack_id == id).unwrap();
    let name = |id: i32| (site(id).method, site(id).scope, site(id).lock_name());
    let inferred = |scope, name: &str| (SiteMethod::OtherVersion, scope, Some(name.to_owned()));
    assert_eq!(name(0), inferred(Scope::Global, "css_set_lock"), "spin_lock_irq(&css_set_lock) in kernel/cgroup/freezer.c");
    assert_eq!(name(1), inferred(Scope::Global, "inode_hash_lock"), "in static data: the global, not the inodes' i_lock");
    assert_eq!(name(2), inferred(Scope::Member, "vmap_node.busy.lock"), "spin_lock(&vn->busy.lock) in mm/vmalloc.c");
    assert_eq!(name(3), (SiteMethod::FunctionName, Scope::Unknown, None), "named at run time: only placed");
    assert_eq!(site(0).file.as_deref(), Some("kernel/cgroup/freezer.c"));
}
