//! End-to-end tests of `lockscope record` and `report` on the running kernel:
//! real BPF programs, real workloads, real locks. They need root (or
//! CAP_BPF+CAP_PERFMON) and bpftool, as .ci/run provides.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use lockscope_experiments::scratch_fs::{ScratchFs, PRIVATE_FS_MIB};
use lockscope_trace::{HeldWait, Holder, LockKind};
use serde_json::Value;

mod common;
use common::{lockscope, serial, stderr, workload, LOCKSCOPE};

/// The names of loaded BPF programs, from bpftool (the kernel's own listing).
fn loaded_programs() -> Vec<String> {
    let out = Command::new("bpftool").args(["prog", "show", "--json"]).output().expect("bpftool is installed (.ci/run installs it)");
    assert!(out.status.success(), "bpftool: {}", stderr(&out));
    let progs: Value = serde_json::from_slice(&out.stdout).unwrap();
    progs.as_array().unwrap().iter().filter_map(|p| p["name"].as_str().map(str::to_owned)).collect()
}

fn assert_nothing_attached() {
    // Program release is asynchronous (RCU); give it a moment.
    for _ in 0..50 {
        if !loaded_programs().iter().any(|n| n.starts_with("lks_")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("lockscope programs still loaded: {:?}", loaded_programs());
}

fn record(dir: &Path, args: &[String]) -> (PathBuf, Output) {
    let trace = dir.join("out.trace");
    let mut all = vec!["record".to_owned(), "-o".into(), trace.display().to_string()];
    all.extend_from_slice(args);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = lockscope(&refs);
    assert_nothing_attached();
    (trace, out)
}

fn report_json(trace: &Path) -> Value {
    let out = lockscope(&["report", trace.to_str().unwrap(), "--format", "json", "--top", "5"]);
    assert!(out.status.success(), "report failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn frames_of(lock: &Value) -> Vec<String> {
    lock["call_sites"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["frames"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_owned()))
        .collect()
}

fn site_of(lock: &Value) -> String {
    lock["call_sites"][0]["site"].as_str().unwrap_or("").to_owned()
}

fn workload_summary<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["workloads"].as_array().unwrap().iter().find(|w| w["name"] == name).unwrap()
}

#[test]
fn file_churn_pair_shares_file_system_locks() {
    let _k = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (trace, out) = record(
        tmp.path(),
        &[
            "--run".into(),
            format!("a={}", workload(&format!("file-churn --dir {} --files 2000 --duration 4s", a.display()))),
            "--run".into(),
            format!("b={}", workload(&format!("file-churn --dir {} --files 2000 --duration 4s", b.display()))),
        ],
    );
    assert!(out.status.success(), "record failed: {}", stderr(&out));
    let report = report_json(&trace);
    assert!(report["shared_locks"].as_u64().unwrap() >= 1, "no shared lock: {report:#}");
    let fs_functions = ["ext4_", "jbd2_", "vfs_", "do_unlinkat", "path_openat", "d_alloc", "iput", "evict", "new_inode"];
    let shared_fs = report["locks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["shared"] == true)
        .any(|l| frames_of(l).iter().any(|f| fs_functions.iter().any(|p| f.starts_with(p))));
    assert!(shared_fs, "no shared lock with a file-system stack: {report:#}");
    // Mode auto learned from an empty program on each of acquire mode's
    // hooks that this kernel refuses both, before loading the recorder's.
    let auto = report["notes"].as_array().unwrap().iter().filter_map(|n| n.as_str()).find(|n| n.starts_with("mode auto: "));
    let auto = auto.unwrap_or_else(|| panic!("no note of mode auto's choice: {:#}", report["notes"]));
    assert!(
        auto.starts_with("mode auto: acquire mode unavailable (fentry on mutex_lock: ") && auto.contains("; kprobe on mutex_lock: "),
        "{auto}"
    );
    for name in ["a", "b"] {
        let w = workload_summary(&report, name);
        assert_eq!(w["exit"], "exit status 0");
        assert!(w["shared_locks"].as_u64().unwrap() >= 1);
    }
}

/// Run-time naming on this kernel (contention mode, no kernel source, no
/// data symbols): the slab cache of each lock and the kernel's BTF name the
/// locks two file-create workloads share, each as a member of the object its
/// call site takes it from.
#[test]
fn a_file_create_pair_shares_locks_named_by_their_objects() {
    let _k = serial();
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let dir = tmp.path().join(name);
        format!("{name}={}", workload(&format!("file-create --files 2000 --dir {} --duration 4s", dir.display())))
    };
    let (trace, out) = record(tmp.path(), &["--run".into(), run("a"), "--run".into(), run("b")]);
    assert!(out.status.success(), "record failed: {}", stderr(&out));
    let report = report_json(&trace);
    let shared: Vec<&Value> = report["locks"].as_array().unwrap().iter().filter(|l| l["shared"] == true).collect();
    let summary: Vec<String> = shared.iter().map(|l| format!("{} {} {}", l["acquisitions"], l["object"], site_of(l))).collect();
    // A global lock cannot be named on this kernel (kallsyms lists no data
    // symbols, BTF no such variable): `inode_hash_lock` is one, with a tenth
    // of the shared acquisitions, more or less as the run goes. Every lock in
    // a slab object or a per-CPU area can be.
    let global = |l: &&&Value| l["why_unnamed"].as_str().is_some_and(|w| w.starts_with("a global") || w.starts_with("in no slab object"));
    let placed: Vec<&&Value> = shared.iter().filter(|l| !global(l)).collect();
    let acquisitions = |l: &&&Value| l["acquisitions"].as_u64().unwrap();
    let total: u64 = placed.iter().map(acquisitions).sum();
    let named: u64 = placed.iter().filter(|l| l["object"].is_string()).map(acquisitions).sum();
    assert!(
        named as f64 >= 0.9 * total as f64,
        "{named} of {total} shared acquisitions in slab objects or per-CPU areas named: {summary:#?}"
    );
    // Which lock these functions take, from the kernel's source. Which of
    // them contend in a run is up to the scheduler; each one that does is
    // named as its source says, and at least one does.
    let taken_by = [
        ("find_get_block_common", "bdev_inode.vfs_inode.i_data.i_private_lock"), // fs/buffer.c
        ("mark_buffer_dirty_inode", "bdev_inode.vfs_inode.i_data.i_private_lock"),
        ("locked_inode_to_wb_and_lock_list", "backing_dev_info.wb.list_lock"), // fs/fs-writeback.c
        ("__es_insert_extent", "ext4_sb_info.s_es_lock"),                      // fs/ext4/extents_status.c
        ("new_inode", "super_block.s_inode_list_lock"),                        // fs/inode.c
    ];
    let mut checked = 0;
    for lock in &shared {
        let site = site_of(lock);
        let Some((_, object)) = taken_by.iter().find(|(function, _)| site.starts_with(&format!("{function}+"))) else { continue };
        assert_eq!(lock["object"], *object, "{site}: {lock:#}");
        assert_eq!(lock["names"][0]["by"], "slab", "{lock:#}");
        checked += 1;
    }
    assert!(checked > 0, "no shared lock taken at a call site whose lock the source names: {summary:#?}");
    for l in shared.iter().filter(|l| l["object"].is_null()) {
        assert!(l["why_unnamed"].as_str().is_some_and(|w| !w.is_empty()), "an unnamed lock says why: {l:#}");
    }
}

/// A lock's life ends with the slab object holding it, in contention mode
/// too. Two file-create workloads on a journaled ext4 (where inode locks are
/// contended) free and allocate inodes by the thousand: a contended inode lock
/// at an address freed meanwhile is a new lock, with a generation of its own
/// and its own name, not the one it replaced (nor, taken by the other
/// workload, a lock the two share). `--no-lifetimes` leaves the frees alone.
#[test]
fn a_freed_object_s_contended_locks_start_a_new_generation() {
    let _k = serial();
    let tmp = tempfile::tempdir().unwrap();
    let fs = ScratchFs::create("lifetimes", &tmp.path().join("fs"), PRIVATE_FS_MIB).unwrap();
    // A pair in directories of their own on `fs`, recorded with `extra`: trace.json and the report.
    let pair = |names: [&str; 2], extra: &[&str]| {
        let mut args: Vec<String> = ["--mode", "contention"].iter().chain(extra).map(|a| a.to_string()).collect();
        for name in names {
            let dir = fs.path().join(name);
            args.extend(["--run".into(), format!("{name}={}", workload(&format!("file-create --dir {} --duration 4s", dir.display())))]);
        }
        let out_dir = tmp.path().join(names[0]);
        std::fs::create_dir(&out_dir).unwrap();
        let (trace, out) = record(&out_dir, &args);
        assert!(out.status.success(), "record failed: {}", stderr(&out));
        (common::json(&trace.join("trace.json")), report_json(&trace))
    };
    let attached =
        |meta: &Value| meta["attached"].as_array().unwrap().iter().filter_map(|a| a.as_str().map(str::to_owned)).collect::<Vec<_>>();
    let later = |report: &Value| {
        report["locks"].as_array().unwrap().iter().filter(|l| l["generation"].as_u64().unwrap() > 0).cloned().collect::<Vec<_>>()
    };

    let (meta, report) = pair(["a", "b"], &[]);
    let hooks = attached(&meta);
    assert!(hooks.iter().any(|a| a == "kmem:kmem_cache_free") && hooks.iter().any(|a| a == "kmem:kfree"), "{meta:#}");
    assert!(meta["counters"]["freed_locks"].as_u64().unwrap() > 0, "{:#}", meta["counters"]);
    let later_locks = later(&report);
    assert!(!later_locks.is_empty(), "no contended lock at an address freed before: {:#}", meta["counters"]);
    // Each generation is placed on its own: an inode's lock at a freed inode's address is named again.
    assert!(later_locks.iter().any(|l| l["object"] == "ext4_inode_info.i_raw_lock"), "{later_locks:#?}");

    // Without lifetimes: no program on the frees, every address one lock, and the trace says so.
    let (meta, report) = pair(["c", "d"], &["--no-lifetimes"]);
    assert!(attached(&meta).iter().all(|a| !a.starts_with("kmem:")), "{meta:#}");
    assert_eq!(meta["counters"]["freed_locks"], 0);
    assert!(later(&report).is_empty());
    assert!(meta["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().starts_with("lock lifetimes not kept")), "{meta:#}");
}

#[test]
fn pipe_workloads_keep_their_pipe_locks_private() {
    let (_, report, held) = pipe_pair(&[]);
    // Named at run time: each pipe's mutex from its slab object, the runqueue
    // locks the two share from the per-CPU area through BTF.
    let locks = report["locks"].as_array().unwrap();
    let named = |object: &'static str| locks.iter().filter(move |l| l["object"] == object);
    assert!(named("pipe_inode_info.mutex").any(|l| l["shared"] == false), "pipe mutexes named: {report:#}");
    let rq = named("rq.__lock").find(|l| l["shared"] == true).unwrap_or_else(|| panic!("no shared runqueue lock named: {report:#}"));
    assert_eq!((rq["names"][0]["by"].as_str(), rq["names"][0]["global"].as_str()), (Some("percpu"), Some("runqueues")));
    // The pipes' spinlocks (their wait queues' and the mutexes' own) name no
    // owner: their holders, read from what ran on the other CPU, are the
    // waiter's own writers, never the other workload's.
    let pipe_spinlocks = spinlocks_named(locks, "pipe_inode_info.");
    let spins: Vec<_> = held.iter().filter(|w| pipe_spinlocks.contains(&w.lock_addr)).collect();
    assert!(spins.iter().any(|w| w.holder == Holder::Workload(w.waiter)), "no pipe spinlock wait attributed to its writers: {spins:#?}");
    assert_spinlock_holders_rarely_across(&held, &pipe_spinlocks);
}

/// A wait attributed to another workload than the waiter.
fn is_across(w: &HeldWait) -> bool {
    matches!(w.holder, Holder::Workload(h) if h != w.waiter)
}

/// Private spinlocks' waits named to the other workload: a spinlock's
/// holder is read from what runs on the other CPU, and a switch there away
/// and back between the recorder's reads can name the wrong process. Seen
/// at most once in a million waits here; more than one in ten thousand is a
/// defect.
fn assert_spinlock_holders_rarely_across(held: &[HeldWait], spinlocks: &[u64]) {
    assert_rarely_across(held, spinlocks, 10_000, "private spinlocks");
}

/// At most one in `one_in` of the waits on `locks` (private ones) attributed
/// to the other workload.
fn assert_rarely_across(held: &[HeldWait], locks: &[u64], one_in: u64, what: &str) {
    let on_them: Vec<&HeldWait> = held.iter().filter(|w| locks.contains(&w.lock_addr)).collect();
    let across: Vec<&&HeldWait> = on_them.iter().filter(|w| is_across(w)).collect();
    let all: u64 = on_them.iter().map(|w| w.count).sum();
    assert!(
        across.iter().map(|w| w.count).sum::<u64>() * one_in <= all,
        "of {all} waits on {what}, attributed to the other workload: {across:#?}"
    );
}

/// The addresses of the spinlocks whose object name starts with `prefix`.
fn spinlocks_named(locks: &[Value], prefix: &str) -> Vec<u64> {
    let named = |l: &&Value| l["kind"] == "spinlock" && l["object"].as_str().is_some_and(|o| o.starts_with(prefix));
    locks.iter().filter(named).map(|l| l["addr"].as_u64().unwrap()).collect()
}

/// The classic tracepoint may not call the kfunc, and this kernel's kallsyms
/// locates no page array: the recorder cannot tell where locks live, as on a
/// kernel with neither. The picture is the same; each lock says why it has
/// no name.
#[test]
fn the_classic_tracepoint_fallback_records_the_same_picture() {
    let (meta, report, _) = pipe_pair(&["--hook".into(), "tracepoint".into()]);
    assert_eq!(meta["hook"], "tracepoint");
    let locks = report["locks"].as_array().unwrap();
    assert!(!locks.is_empty());
    for l in locks {
        assert!(l["names"].as_array().unwrap().is_empty() && l["object"].is_null(), "named without a place: {l:#}");
        let why = l["why_unnamed"].as_str().unwrap_or("");
        assert!(why.starts_with("the recorder could not tell where it lives") && why.contains("bpf_get_kmem_cache"), "{l:#}");
    }
    assert!(
        report["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().starts_with("locks not named at run time")),
        "{report:#}"
    );
}

/// Two pipe workloads; checks each keeps its pipe mutex private. Four writers on two
/// CPUs make the pipe mutex contended in every run, not only in lucky ones.
/// Returns trace.json, the report and the waits by holder.
fn pipe_pair(extra: &[String]) -> (Value, Value, Vec<HeldWait>) {
    let _k = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (trace, out) = record(
        tmp.path(),
        &[
            "--run".into(),
            format!("a={}", workload("pipe --writers 4 --duration 4s")),
            "--run".into(),
            format!("b={}", workload("pipe --writers 4 --duration 4s")),
        ]
        .into_iter()
        .chain(extra.iter().cloned())
        .collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "record failed: {}", stderr(&out));
    let report = report_json(&trace);
    let locks = report["locks"].as_array().unwrap();
    let is_pipe = |l: &&Value| site_of(l).contains("pipe_");
    for name in ["a", "b"] {
        let private = workload_summary(&report, name)["private_locks"].as_u64().unwrap();
        assert!(private >= 1, "workload {name} has no private lock: {report:#}");
        let own_pipe =
            locks.iter().filter(is_pipe).any(|l| l["shared"] == false && l["uses"][0]["workload_name"] == name && l["kind"] == "mutex");
        assert!(own_pipe, "workload {name} shows no private pipe mutex: {report:#}");
    }
    let shared_pipe: Vec<_> = locks.iter().filter(is_pipe).filter(|l| l["shared"] == true).collect();
    assert!(shared_pipe.is_empty(), "pipe locks reported shared: {shared_pipe:#?}");
    // Each waited on its own pipe while its own writers held it, as the
    // mutexes' owner words tell it. One wait of some 5 million (8 runs) was
    // named to the other workload; why is not known yet, so it is bounded
    // at 1 in 100,000 (each run makes ~600,000 such waits).
    let addrs = |spinlocks: bool| -> Vec<u64> {
        let kind = |l: &&Value| (l["kind"] == "spinlock") == spinlocks;
        locks.iter().filter(is_pipe).filter(kind).map(|l| l["addr"].as_u64().unwrap()).collect()
    };
    let held = lockscope_trace::read_trace(&trace).unwrap().held_waits;
    assert_rarely_across(&held, &addrs(false), 100_000, "private pipe mutexes");
    assert_spinlock_holders_rarely_across(&held, &addrs(true));
    for name in ["a", "b"] {
        assert!(waited(&report, name, "self", None) > 0, "{name} waited on its own pipe: {:#}", report["waits_by_holder"]);
    }
    let meta = serde_json::from_slice(&std::fs::read(trace.join("trace.json")).unwrap()).unwrap();
    (meta, report, held)
}

/// The waits `waiter` made on locks held by `kind` (`workload` `holder`, `self`, ...), from the report.
fn waited(report: &Value, waiter: &str, kind: &str, holder: Option<&str>) -> u64 {
    let rows = report["waits_by_holder"].as_array().unwrap();
    let row =
        rows.iter().find(|r| r["waiter"] == waiter && r["holder_kind"] == kind && r["holder"].as_str() == holder.or(r["holder"].as_str()));
    row.map_or(0, |r| r["waits"].as_u64().unwrap())
}

/// Two workloads writing one FIFO wait on its mutex while the other holds
/// it: the waits are attributed to the other workload, read from the mutex's
/// owner word.
#[test]
fn waits_on_a_shared_pipe_are_attributed_to_the_workload_holding_it() {
    let _k = serial();
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("shared.fifo");
    let writer = |name: &str| format!("{name}={}", workload(&format!("pipe --writers 4 --duration 4s --fifo {}", fifo.display())));
    let (trace, out) = record(tmp.path(), &["--run".into(), writer("a"), "--run".into(), writer("b")]);
    assert!(out.status.success(), "record failed: {}", stderr(&out));
    let report = report_json(&trace);
    let locks = report["locks"].as_array().unwrap();
    assert!(locks.iter().any(|l| l["object"] == "pipe_inode_info.mutex" && l["shared"] == true), "the FIFO's mutex is shared: {report:#}");
    for (waiter, holder) in [("a", "b"), ("b", "a")] {
        assert!(waited(&report, waiter, "workload", Some(holder)) > 0, "{waiter} waited on {holder}: {:#}", report["waits_by_holder"]);
    }
    // The FIFO's spinlocks name no owner: their holder is what ran on the other CPU.
    let fifo_spinlocks = spinlocks_named(locks, "pipe_inode_info.");
    let read = lockscope_trace::read_trace(&trace).unwrap();
    let id = |name: &str| read.meta.workloads.iter().find(|w| w.name == name).unwrap().id;
    for (waiter, holder) in [("a", "b"), ("b", "a")] {
        let spins = read
            .held_waits
            .iter()
            .filter(|w| (w.waiter, w.holder) == (id(waiter), Holder::Workload(id(holder))) && fifo_spinlocks.contains(&w.lock_addr));
        assert!(spins.map(|w| w.count).sum::<u64>() > 0, "{waiter} waited on a FIFO spinlock {holder} held: {:#?}", read.held_waits);
    }
    // Every spinlock wait left without a holder is counted under why.
    let spinning: BTreeSet<u64> = read
        .records
        .iter()
        .filter(|r| matches!(r.kind(), LockKind::Spinlock | LockKind::RwlockRead | LockKind::RwlockWrite))
        .map(|r| r.lock_addr)
        .collect();
    let unnamed: u64 =
        read.held_waits.iter().filter(|w| w.holder == Holder::Unknown && spinning.contains(&w.lock_addr)).map(|w| w.count).sum();
    let c = &read.meta.counters;
    let counted = c.holder_released + c.holder_unseen + c.holder_ambiguous;
    // Waits still under way at the end (one per task at most) are counted, not recorded.
    let in_flight = 64 + c.state_busy + c.nesting_overflow + c.holders_full;
    assert!(unnamed <= counted && counted <= unnamed + in_flight, "{unnamed} unnamed spinlock waits, {counted} counted: {c:?}");
    let text = lockscope(&["report", trace.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("WAITS BY HOLDER") && text.contains("on locks held by b"), "{text}");
    if counted > 0 {
        assert!(text.contains(&format!("spinlock waits with no holder named: {} with the lock free", c.holder_released)), "{text}");
    }
}

/// `--time-programs`: the kernel times the recorder's programs, and the
/// trace and report say what they cost. Every event was a run of theirs.
#[test]
fn the_recorder_s_own_cost_is_timed_by_the_kernel_when_asked() {
    let _k = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (trace, out) = record(tmp.path(), &["--time-programs".into(), "--run".into(), format!("w={}", workload("pipe --duration 2s"))]);
    assert!(out.status.success(), "record failed: {}", stderr(&out));
    let report = report_json(&trace);
    let (cost, events) = (&report["recorder_cost"], report["counters"]["events"].as_u64().unwrap());
    assert!(events > 0, "{report:#}");
    assert!(cost["program_runs"].as_u64().unwrap() >= events && cost["run_time_ns"].as_u64().unwrap() > 0, "{cost} for {events} events");
    // Each program that ran, by name: the wait's begin ran once per event.
    let programs = cost["programs"].as_array().unwrap();
    let runs = |name: &str| programs.iter().find(|p| p["name"] == name).map_or(0, |p| p["runs"].as_u64().unwrap());
    assert!(runs("lks_btf_begin").max(runs("lks_tp_begin")) >= events, "{cost:#}");
    let total: u64 = programs.iter().map(|p| p["run_time_ns"].as_u64().unwrap()).sum();
    assert_eq!(total, cost["run_time_ns"].as_u64().unwrap());
    let text = String::from_utf8_lossy(&lockscope(&["report", trace.to_str().unwrap()]).stdout).into_owned();
    assert!(text.contains("the recorder's programs ran"), "{text}");
    let dearest = programs[0]["name"].as_str().unwrap();
    assert!(text.contains(&format!("{dearest}: ")), "the dearest program, {dearest}, is listed:\n{text}");
    // Without it, nothing is claimed.
    let other = tempfile::tempdir().unwrap();
    let (untimed, out) = record(other.path(), &["--run".into(), format!("w={}", workload("pipe --duration 1s"))]);
    assert!(out.status.success(), "record failed: {}", stderr(&out));
    assert!(report_json(&untimed)["recorder_cost"].is_null());
}

#[test]
fn an_early_exit_gives_a_partial_result_with_its_own_run_time() {
    let _k = serial();
    let tmp = tempfile::tempdir().unwrap();
    // Two pipe writers contend with each other: locks appear even alone.
    let (trace, out) = record(
        tmp.path(),
        &["--run".into(), format!("long={}", workload("pipe --duration 3s")), "--run".into(), "short=sh -c 'exit 7'".into()],
    );
    assert!(out.status.success(), "record failed: {}", stderr(&out));
    let report = report_json(&trace);
    let short = workload_summary(&report, "short");
    let long = workload_summary(&report, "long");
    assert_eq!(short["exit"], "exit status 7");
    assert!(short["run_time_secs"].as_f64().unwrap() < 1.0, "{short}");
    assert!(long["run_time_secs"].as_f64().unwrap() >= 2.5, "{long}");
    assert!(long["acquisitions"].as_u64().unwrap() > 0);
    assert!(report["duration_secs"].as_f64().unwrap() >= 2.5, "the recording waits for every workload");
}

#[test]
fn a_missing_command_is_a_clear_error_and_writes_nothing() {
    let _k = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (trace, out) = record(tmp.path(), &["--run".into(), "x=/nonexistent/lockscope-cmd --flag".into()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("workload x: cannot run \"/nonexistent/lockscope-cmd\""), "{err}");
    assert!(err.contains("No such file or directory"), "{err}");
    assert!(!trace.exists());
}

#[test]
fn a_missing_pid_is_a_clear_error() {
    let _k = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (trace, out) = record(tmp.path(), &["--pid".into(), "gone=3999999".into()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("workload gone: process 3999999 does not exist"), "{}", stderr(&out));
    assert!(!trace.exists());
}

#[test]
fn an_existing_process_is_followed_by_pid() {
    let _k = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut child =
        Command::new(LOCKSCOPE).args(["workload", "pipe", "--duration", "20s"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    let (trace, out) = record(tmp.path(), &["--pid".into(), format!("p={}", child.id()), "--duration".into(), "2s".into()]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(out.status.success(), "record failed: {}", stderr(&out));
    let report = report_json(&trace);
    let p = workload_summary(&report, "p");
    assert!(p["acquisitions"].as_u64().unwrap() > 0, "{report:#}");
    assert!(p["pids"].as_array().unwrap().contains(&child.id().into()));
}

#[test]
fn acquire_mode_is_refused_clearly_here() {
    let _k = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (_, out) = record(tmp.path(), &["--mode".into(), "acquire".into(), "--run".into(), "t=true".into()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("acquire mode is unavailable on this kernel") && err.contains("fentry"), "{err}");
}

#[test]
fn ctrl_c_ends_the_recording_and_still_writes_the_trace() {
    let _k = serial();
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("int.trace");
    let child = Command::new(LOCKSCOPE)
        .args(["record", "-o", trace.to_str().unwrap(), "--run", "s=sleep 60"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_nothing_attached();
    assert!(out.status.success(), "{}", stderr(&out));
    let meta: Value = serde_json::from_slice(&std::fs::read(trace.join("trace.json")).unwrap()).unwrap();
    assert_eq!(meta["end_reason"], "interrupted");
    let sleep_pid = meta["workloads"][0]["pids"][0].as_u64().unwrap();
    assert!(!Path::new(&format!("/proc/{sleep_pid}")).exists(), "the launched workload was ended");
}

#[test]
fn without_privileges_record_explains_and_doctor_still_reports() {
    let _k = serial();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // A copy nobody can execute, wherever the build tree lives.
    let bin = tmp.path().join("lockscope");
    std::fs::copy(LOCKSCOPE, &bin).unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run_as_nobody = |args: &[&str]| {
        use std::os::unix::process::CommandExt;
        Command::new(&bin).args(args).uid(65534).gid(65534).output().unwrap()
    };
    let trace = tmp.path().join("t");
    let out = run_as_nobody(&["record", "-o", trace.to_str().unwrap(), "--run", "t=true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("run as root or grant CAP_BPF+CAP_PERFMON"), "{}", stderr(&out));
    assert!(!trace.exists());

    let out = run_as_nobody(&["doctor", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doctor: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doctor["privileges"]["can_trace"], false);
    assert_eq!(doctor["modes"]["contention"]["available"], false);
    assert!(doctor["modes"]["contention"]["reason"].as_str().unwrap().contains("CAP_BPF"));
    assert_nothing_attached();
}

#[test]
fn doctor_finds_contention_mode_on_this_kernel() {
    let _k = serial();
    let out = lockscope(&["doctor", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doctor: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doctor["modes"]["contention"]["available"], true, "{doctor:#}");
    let acquire = &doctor["modes"]["acquire"];
    assert_eq!(acquire["available"], false);
    assert!(!acquire["reason"].as_str().unwrap().is_empty());
    // This kernel (6.18) names locks at run time from slab caches and per-CPU variables.
    assert_eq!((doctor["naming"]["slab"].as_bool(), doctor["naming"]["percpu"].as_bool()), (Some(true), Some(true)), "{doctor:#}");
    assert_nothing_attached();
}

#[test]
fn a_damaged_trace_is_named_as_such() {
    let _k = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (trace, out) = record(tmp.path(), &["--run".into(), "t=sh -c 'ls / > /dev/null'".into()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(lockscope(&["report", trace.to_str().unwrap()]).status.success());

    let stacks = trace.join("stacks.parquet");
    let len = std::fs::metadata(&stacks).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&stacks).unwrap().set_len(len / 2).unwrap();
    let out = lockscope(&["report", trace.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("stacks.parquet is truncated"), "{}", stderr(&out));

    let out = lockscope(&["report", tmp.path().to_str().unwrap()]);
    assert!(stderr(&out).contains("not a lockscope trace"), "{}", stderr(&out));
}

/// The mount point of a cgroup hierarchy: v2, or the v1 one with `controller`.
fn cgroup_mount(v2: bool, controller: &str) -> Option<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts").ok()?.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let matches = if v2 { f[2] == "cgroup2" } else { f[2] == "cgroup" && f[3].split(',').any(|o| o == controller) };
        matches.then(|| PathBuf::from(f[1]))
    })
}

/// Records a pipe workload placed in a fresh cgroup under `mount`.
fn record_cgroup(mount: &Path) {
    let group = mount.join(format!("lockscope-test-{}", std::process::id()));
    std::fs::create_dir(&group).unwrap();
    let mut child =
        Command::new(LOCKSCOPE).args(["workload", "pipe", "--duration", "20s"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    std::fs::write(group.join("cgroup.procs"), child.id().to_string()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (trace, out) = record(tmp.path(), &["--cgroup".into(), format!("c={}", group.display()), "--duration".into(), "2s".into()]);
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir(&group);
    assert!(out.status.success(), "record failed: {}", stderr(&out));
    let report = report_json(&trace);
    let c = workload_summary(&report, "c");
    assert!(c["acquisitions"].as_u64().unwrap() > 0, "{report:#}");
    assert!(c["pids"].as_array().unwrap().contains(&child.id().into()), "{c}");
}

#[test]
fn a_cgroup_v2_is_followed_in_the_kernel() {
    let _k = serial();
    let mount = cgroup_mount(true, "").expect("a cgroup2 hierarchy is mounted");
    record_cgroup(&mount);
}

#[test]
fn a_cgroup_v1_is_followed_by_polling() {
    let _k = serial();
    let Some(mount) = cgroup_mount(false, "pids") else {
        eprintln!("no cgroup v1 pids hierarchy on this machine; nothing to test");
        return;
    };
    record_cgroup(&mount);
}
