//! Acquire mode, proven inside Debian's 6.1 kernel (fentry works there) via
//! `lockscope guest`: one boot runs every scenario of guest/acquire.sh, and
//! each test checks one of its reports. Needs qemu-system-x86, busybox-static
//! and bpftool (setup.sh installs them) and apt access for the kernel package.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use lockscope_trace::LockKind;
use serde_json::Value;

mod common;
use common::LOCKSCOPE;
const SCENARIOS: &str = include_str!("guest/acquire.sh");
const KILL_SCENARIO: &str = include_str!("guest/kill.sh");

/// Boots the guest with `script`; its /out, or why the boot failed.
fn boot(name: &str, script: &str) -> Result<PathBuf, String> {
    // Under the target directory, one per scenario, replaced on each run: nothing piles up in /tmp.
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("guest-{name}"));
    let _ = std::fs::remove_dir_all(&out);
    // Only a hang should reach the timeout: the scenarios take ~9.5 min
    // under emulation while the kill scenario boots beside them.
    let status = Command::new(LOCKSCOPE)
        .args(["guest", "--timeout", "20m", "--bin", "/usr/sbin/bpftool", "--out"])
        .arg(&out)
        .arg("--")
        .arg(script)
        .status()
        .map_err(|e| format!("lockscope guest: {e}"))?;
    if !status.success() {
        let console = std::fs::read_to_string(out.join("console.log")).unwrap_or_default();
        return Err(format!("guest run {name} failed ({status}); console:\n{console}"));
    }
    Ok(out)
}

/// One boot serves every test of a script; a failed boot is not retried.
fn guest_out() -> &'static Path {
    static OUT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    OUT.get_or_init(|| boot("scenarios", SCENARIOS)).as_deref().unwrap_or_else(|e| panic!("{e}"))
}

fn killed_out() -> &'static Path {
    static OUT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    OUT.get_or_init(|| boot("kill", KILL_SCENARIO)).as_deref().unwrap_or_else(|e| panic!("{e}"))
}

fn report(name: &str) -> Value {
    let path = guest_out().join(format!("{name}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn locks(r: &Value) -> &Vec<Value> {
    r["locks"].as_array().unwrap()
}

fn site(l: &Value) -> &str {
    l["call_sites"][0]["site"].as_str().unwrap_or("")
}

fn users(l: &Value) -> Vec<&str> {
    l["uses"].as_array().unwrap().iter().map(|u| u["workload_name"].as_str().unwrap()).collect()
}

fn global(l: &Value) -> &str {
    l["global"].as_str().unwrap_or("")
}

#[test]
fn each_pipe_mutex_is_private_to_its_workload() {
    assert_private_pipe_mutexes(&report("pipes"));
}

#[test]
fn the_kprobe_fallback_sees_the_same_private_pipe_mutexes() {
    assert_private_pipe_mutexes(&report("kprobe-pipes"));
    let meta: Value = serde_json::from_slice(&std::fs::read(guest_out().join("kprobe-pipes/trace.json")).unwrap()).unwrap();
    assert_eq!(meta["hook"], "kprobe");
}

#[test]
fn without_unlock_probes_the_same_mutexes_have_no_hold_time() {
    let r = report("nohold-pipes");
    assert_private_pipe_mutexes(&r);
    let meta: Value = serde_json::from_slice(&std::fs::read(guest_out().join("nohold-pipes/trace.json")).unwrap()).unwrap();
    let attached: Vec<&str> = meta["attached"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert!(attached.contains(&"mutex_lock") && !attached.contains(&"mutex_unlock"), "{attached:?}");
    let holds: u64 = locks(&r).iter().flat_map(|l| l["uses"].as_array().unwrap()).map(|u| u["hold_total_ns"].as_u64().unwrap()).sum();
    assert_eq!(holds, 0);
    // Nothing waits for a release that is not probed.
    assert_eq!(r["counters"]["nesting_overflow"], 0, "{}", r["counters"]);
}

#[test]
fn shallow_stacks_keep_the_call_sites() {
    let r = report("pipes-shallow");
    assert_private_pipe_mutexes(&r);
    let frames = locks(&r).iter().flat_map(|l| l["call_sites"].as_array().unwrap()).map(|c| c["frames"].as_array().unwrap().len());
    assert!(frames.clone().count() > 0 && frames.max() <= Some(8), "stacks of at most 8 frames");
}

fn assert_private_pipe_mutexes(r: &Value) {
    assert_eq!(r["mode"], "acquire");
    let pipe_mutexes: Vec<&Value> = locks(r).iter().filter(|l| l["kind"] == "mutex" && site(l).starts_with("pipe_write")).collect();
    for name in ["a", "b"] {
        let own: Vec<_> = pipe_mutexes.iter().filter(|l| users(l) == [name]).collect();
        assert!(!own.is_empty(), "{name} has no private pipe mutex: {pipe_mutexes:#?}");
        assert!(own[0]["uses"][0]["acquisitions"].as_u64().unwrap() > 1000, "every write takes it");
    }
    assert!(pipe_mutexes.iter().all(|l| l["shared"] == false), "{pipe_mutexes:#?}");
    let addrs: BTreeSet<u64> = pipe_mutexes.iter().map(|l| l["addr"].as_u64().unwrap()).collect();
    assert!(addrs.len() >= 2, "the two pipes' mutexes are at different addresses");
}

#[test]
fn a_pipe_between_two_workloads_is_shared() {
    let r = report("fifo");
    let shared_pipe = locks(&r)
        .iter()
        .find(|l| l["shared"] == true && l["kind"] == "mutex" && site(l).starts_with("pipe_"))
        .unwrap_or_else(|| panic!("no shared pipe mutex: {r:#}"));
    let mut who = users(shared_pipe);
    who.sort();
    assert_eq!(who, ["reader", "writer"]);
}

/// Acquire mode times waits as well (the contention tracepoints) and
/// attributes each to the holder its lock word names: the writers of one
/// FIFO wait on each other's hold of its mutex.
#[test]
fn waits_on_a_shared_fifo_are_attributed_to_the_other_workload() {
    let r = report("fifo-waits");
    assert_eq!(r["mode"], "acquire");
    for (waiter, holder) in [("a", "b"), ("b", "a")] {
        let waits = r["waits_by_holder"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["waiter"] == waiter && w["holder_kind"] == "workload" && w["holder"] == holder)
            .map_or(0, |w| w["waits"].as_u64().unwrap());
        assert!(waits > 0, "{waiter} never waited on {holder}: {:#}", r["waits_by_holder"]);
    }
}

/// Waits follow `--locks`: with only spinlocks and rwlocks probed, the
/// FIFO's mutex waits (dozens each way above) are not timed. Every wait
/// timed is on a lock the trace recorded, and recorded only as a kind asked for.
#[test]
fn waits_on_locks_not_asked_for_are_not_timed() {
    let trace = lockscope_trace::read_trace(&guest_out().join("fifo-no-mutex")).unwrap();
    assert_eq!(trace.meta.mode, lockscope_trace::Mode::Acquire);
    let mut kinds: BTreeMap<u64, BTreeSet<LockKind>> = BTreeMap::new();
    for r in &trace.records {
        kinds.entry(r.lock_addr).or_default().insert(r.kind());
    }
    let asked = [LockKind::Spinlock, LockKind::RwlockRead, LockKind::RwlockWrite];
    for wait in trace.held_waits.iter().filter(|w| !w.in_interrupt) {
        let recorded = kinds.get(&wait.lock_addr).unwrap_or_else(|| panic!("a wait on a lock never recorded: {wait:?}"));
        assert!(recorded.iter().all(|k| asked.contains(k)), "{wait:?} on a lock recorded as {recorded:?}");
    }
}

#[test]
fn file_churn_shares_file_system_wide_locks_named_when_global() {
    let r = report("files");
    let shared: Vec<&Value> = locks(&r).iter().filter(|l| l["shared"] == true).collect();
    assert!(
        shared.iter().any(|l| global(l) == "inode_hash_lock"),
        "inode_hash_lock not shared: {:#?}",
        shared.iter().map(|l| (global(l), site(l))).collect::<Vec<_>>()
    );
    assert!(shared.iter().any(|l| site(l).starts_with("jbd2_") || site(l).contains("journal")), "no journal lock shared");
    assert!(r["kallsyms_all"] == true);
}

/// Spinlock initialisation is a plain store on Debian's kernel, so the slab
/// free of an object ends the locks inside it. Without that, an inode freed by
/// one workload and reused for the other's next file passed for one shared
/// `i_lock` (8% of the new inodes' locks in an earlier recording).
#[test]
fn a_freed_inode_reused_by_the_other_workload_is_a_new_lock() {
    assert_freed_inodes_end_their_locks("files");
    // kfree_bulk gives no cache: each object's is read from its page.
    let meta: Value = serde_json::from_slice(&std::fs::read(guest_out().join("files/trace.json")).unwrap()).unwrap();
    assert!(meta["attached"].as_array().unwrap().iter().any(|f| f == "kmem_cache_free_bulk"));
    let r = full_report("files");
    assert_eq!(r["counters"]["unsized_frees"], 0, "every bulk-freed object's slab cache was found");
}

/// With kprobes the single frees come from the slab tracepoints, which run
/// even inside another probe: reuse is told apart as well as with fentry
/// (kprobes on the frees left 26% of new inodes' locks shared).
#[test]
fn with_kprobes_a_freed_inode_is_a_new_lock_too() {
    assert_freed_inodes_end_their_locks("kprobe-files");
    let meta: Value = serde_json::from_slice(&std::fs::read(guest_out().join("kprobe-files/trace.json")).unwrap()).unwrap();
    assert_eq!(meta["hook"], "kprobe");
    for free in ["kmem_cache_free", "kfree"] {
        assert!(meta["attached"].as_array().unwrap().iter().any(|f| f == free), "{free} not attached: {:#}", meta["attached"]);
    }
}

/// `--no-lifetimes`: neither slab frees nor lock initialisation are probed,
/// every address is one lock, and the trace says so.
#[test]
fn without_lifetimes_no_free_or_init_is_probed() {
    let trace = lockscope_trace::read_trace(&guest_out().join("files-no-lifetimes")).unwrap();
    let probed_lifetimes: Vec<&String> = trace
        .meta
        .attached
        .iter()
        .filter(|f| ["kmem_cache_free", "kfree", "__mutex_init", "__init_rwsem"].iter().any(|l| f.contains(l)))
        .collect();
    assert!(probed_lifetimes.is_empty(), "{probed_lifetimes:?}");
    assert!(trace.meta.attached.iter().any(|f| f == "mutex_lock"), "{:?}", trace.meta.attached);
    assert!(trace.meta.notes.iter().any(|n| n.starts_with("lock lifetimes not kept")), "{:#?}", trace.meta.notes);
    assert_eq!(trace.meta.counters.freed_locks, 0);
    assert!(trace.records.len() > 100, "{} records", trace.records.len());
    assert!(trace.records.iter().all(|r| r.generation == 0), "a generation without lifetimes");
}

/// The locks of newly created inodes (taken in d_instantiate_new) are almost
/// never shared: a freed inode's address, reused by the other workload, is a
/// new generation. One sharing is real and left aside: ext4 gives a just-freed
/// inode number to the other workload's next file, whose creation
/// (`insert_inode_locked`) takes the i_lock of the dying inode still hashed
/// under that number (0.5–1.5% of new inodes, by how the two interleave).
fn assert_freed_inodes_end_their_locks(name: &str) {
    let r = full_report(name);
    assert!(r["counters"]["freed_locks"].as_u64().unwrap() > 0, "{:#}", r["counters"]);
    let notes = r["notes"].as_array().unwrap();
    assert!(notes.iter().any(|n| n.as_str().unwrap().contains("when the slab object holding it is freed")), "{notes:#?}");

    let trace = lockscope_trace::read_trace(&guest_out().join(name)).unwrap();
    let symbols = lockscope_trace::SymbolTable::from_snapshot(trace.symbols.clone());
    let stacks: BTreeMap<i32, &[u64]> = trace.stacks.iter().map(|s| (s.id, s.frames.as_slice())).collect();
    let call_site = |stack_id: i32| -> String {
        let frames = symbols.frames(stacks.get(&stack_id).copied().unwrap_or_default());
        let site = lockscope_trace::frames::call_site(&frames).and_then(|f| f.function.clone());
        site.map_or_else(String::new, |(function, _)| function)
    };
    // Per lock (address, generation): each workload's call sites.
    let mut sites: BTreeMap<(u64, u32), BTreeMap<u32, BTreeSet<String>>> = BTreeMap::new();
    for r in &trace.records {
        sites.entry((r.lock_addr, r.generation)).or_default().entry(r.workload).or_default().insert(call_site(r.stack_id));
    }
    let new_inode_locks: Vec<_> = sites.iter().filter(|(_, by)| by.values().any(|s| s.contains("d_instantiate_new"))).collect();
    let mut through_the_hash = 0;
    let mut reused = Vec::new();
    for (lock, by) in &new_inode_locks {
        let (creators, others): (Vec<_>, Vec<_>) = by.values().partition(|s| s.contains("d_instantiate_new"));
        let only_the_hash_walk = others.iter().all(|s| s.iter().all(|site| site == "insert_inode_locked"));
        match (creators.len(), others.len()) {
            (1, 0) => {}
            (1, _) if only_the_hash_walk => through_the_hash += 1,
            _ => reused.push((lock, by)),
        }
    }
    assert!(new_inode_locks.len() > 100, "{} new inodes' locks", new_inode_locks.len());
    assert!(
        reused.len() * 100 <= new_inode_locks.len(),
        "{} of {} new inodes' locks shared other than by insert_inode_locked ({through_the_hash} by it): {:#?}",
        reused.len(),
        new_inode_locks.len(),
        &reused[..reused.len().min(5)]
    );
    let generations: BTreeSet<u32> = new_inode_locks.iter().map(|((_, generation), _)| *generation).collect();
    assert!(generations.len() > 1, "inode addresses were reused: several generations");
}

/// Each distinct stack is stored once, so no call site loses its stack to
/// another's (a BPF stack-trace map's bucket collisions lost ~2% of
/// acquisitions, and on some boots every unlink's final `iput`).
#[test]
fn every_acquisition_keeps_its_stack() {
    let r = full_report("files");
    for counter in ["stacks_full", "stack_errors"] {
        assert_eq!(r["counters"][counter], 0, "{:#}", r["counters"]);
    }
    let without_stack: u64 = locks(&r)
        .iter()
        .flat_map(|l| l["call_sites"].as_array().unwrap())
        .filter(|c| c["frames"].as_array().unwrap().is_empty())
        .map(|c| c["acquisitions"].as_u64().unwrap())
        .sum();
    assert_eq!(without_stack, 0);
    // Every file's final iput, in unlink: one call site shared by thousands of locks.
    let unlinks = locks(&r)
        .iter()
        .filter(|l| {
            l["call_sites"].as_array().unwrap().iter().any(|c| c["site"].as_str().is_some_and(|s| s.starts_with("_atomic_dec_and_lock+")))
        })
        .count();
    assert!(unlinks >= 400, "{unlinks} inode locks taken by the final iput");
}

/// With one stack in 64 after a lock's first 16 acquisitions, every lock
/// still has its call sites, their counts add up to the lock's exact count,
/// and the file-system-wide locks are still found shared.
#[test]
fn sampled_stacks_keep_every_lock_and_its_exact_count() {
    let r = full_report("files-sampled");
    let notes = r["notes"].as_array().unwrap();
    assert!(notes.iter().any(|n| n.as_str().unwrap().starts_with("stacks sampled")), "{notes:#?}");
    assert_eq!(r["counters"]["map_full"], 0, "the stackless and the sampled records fit");
    let all = locks(&r);
    let mut without_site = 0;
    for l in all {
        let sites = l["call_sites"].as_array().unwrap();
        let by_site: u64 = sites.iter().map(|c| c["acquisitions"].as_u64().unwrap()).sum();
        assert_eq!(by_site, l["acquisitions"].as_u64().unwrap(), "call sites do not add up: {l:#}");
        if sites.iter().all(|c| c["frames"].as_array().unwrap().is_empty()) {
            without_site += l["acquisitions"].as_u64().unwrap();
        }
    }
    assert_eq!(without_site, 0, "acquisitions without a stack; counters: {:#}", r["counters"]);
    let hot = all.iter().map(|l| l["acquisitions"].as_u64().unwrap()).max().unwrap();
    assert!(hot > 1000, "a hot lock was sampled: {hot} acquisitions");
    let shared: Vec<&Value> = all.iter().filter(|l| l["shared"] == true).collect();
    assert!(shared.iter().any(|l| global(l) == "inode_hash_lock"), "inode_hash_lock not shared");
}

/// Every lock of a guest trace, reported on the host.
fn full_report(name: &str) -> Value {
    let trace = guest_out().join(name);
    let out = Command::new(LOCKSCOPE).arg("report").arg(&trace).args(["--format", "json", "--top", "1000000"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The guest runs Debian's 6.1 kernel, whose source is Debian's
/// linux-source-6.1: the file-churn trace resolves against it to objects.
#[test]
fn file_churn_stacks_resolve_to_kernel_objects() {
    // By function and lock kind: what resolution does without debug info.
    let r = resolved_report("files", &["--no-debug-info"], 100_000);
    let all = locks(&r);
    let object = |l: &Value| l["object"].as_str().unwrap_or("").to_owned();
    let total: u64 = all.iter().map(|l| l["acquisitions"].as_u64().unwrap()).sum();
    let named: u64 = all.iter().filter(|l| !object(l).is_empty()).map(|l| l["acquisitions"].as_u64().unwrap()).sum();
    assert!(named as f64 >= 0.7 * total as f64, "only {named} of {total} acquisitions name their lock");
    let shared: Vec<(String, &str)> =
        all.iter().filter(|l| l["shared"] == true).map(|l| (object(l), l["scope"].as_str().unwrap_or(""))).collect();
    for expected in [("inode_hash_lock", "global"), ("super_block.s_inode_list_lock", "member"), ("journal_t.j_state_lock", "member")] {
        assert!(shared.iter().any(|(o, s)| (o.as_str(), *s) == expected), "{expected:?} not among the shared locks: {shared:?}");
    }
    let subsystems: Vec<&str> = all.iter().filter_map(|l| l["subsystem"].as_str()).collect();
    assert!(subsystems.iter().any(|s| s.starts_with("fs/ext4")) && subsystems.contains(&"fs/jbd2"), "{subsystems:?}");
    // The wrapper _atomic_dec_and_lock is handed its lock: iput's call of it names it.
    let handed: Vec<(String, &str)> = all
        .iter()
        .flat_map(|l| l["call_sites"].as_array().unwrap().iter().map(move |c| (l, c)))
        .filter(|(_, c)| c["site"].as_str().is_some_and(|s| s.starts_with("_atomic_dec_and_lock+")))
        .map(|(l, c)| (object(l), c["source"].as_str().unwrap_or("")))
        .collect();
    assert!(!handed.is_empty() && handed.iter().all(|(o, s)| o == "inode.i_lock" && s.starts_with("fs/inode.c:")), "{handed:?}");
}

/// `lockscope resolve` of the guest trace `name` with `flags` (after
/// preparing the source), reported with `top` call sites per lock.
fn resolved_report(name: &str, flags: &[&str], top: u32) -> Value {
    let trace = guest_out().join(name);
    let resolved = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}{}.resolved", flags.join("")));
    let mut resolve: Vec<String> = vec!["resolve".into(), trace.display().to_string(), "--force".into(), "-o".into()];
    resolve.push(resolved.display().to_string());
    resolve.extend(flags.iter().map(|f| f.to_string()));
    for args in [vec!["source".into(), "prepare".into()], resolve] {
        let out = Command::new(LOCKSCOPE).args(&args).env("TERM", "dumb").output().unwrap();
        assert!(out.status.success(), "lockscope {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out =
        Command::new(LOCKSCOPE).arg("report").arg(&resolved).args(["--format", "json", "--top"]).arg(top.to_string()).output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Fetches Debian's debug info for the guest kernel (once; cached): what
/// `lockscope guest --debug-info` printed.
fn fetch_debug_info() -> String {
    let fetched = Command::new(LOCKSCOPE).args(["guest", "--debug-info"]).output().unwrap();
    assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));
    String::from_utf8_lossy(&fetched.stdout).into_owned()
}

/// With Debian's debug info for the guest kernel, each call site's return
/// address gives its line: through inlined functions, into modules (ext4,
/// jbd2), and past lock wrappers to the caller that names the lock.
#[test]
fn with_debug_info_file_churn_stacks_resolve_at_their_lines() {
    assert!(fetch_debug_info().contains("vmlinux: "));
    let r = resolved_report("files", &[], 100_000);
    assert!(r["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().starts_with("call sites located with the debug info")));
    let all = locks(&r);
    let total: u64 = all.iter().map(|l| l["acquisitions"].as_u64().unwrap()).sum();
    let named: u64 = all.iter().filter(|l| l["object"].is_string()).map(|l| l["acquisitions"].as_u64().unwrap()).sum();
    assert!(named as f64 >= 0.95 * total as f64, "only {named} of {total} acquisitions name their lock");
    // (lock, source line) of every call site in `function`.
    let sites_in = |function: &str| -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = all
            .iter()
            .flat_map(|l| l["call_sites"].as_array().unwrap().iter().map(move |c| (l, c)))
            .filter(|(_, c)| c["site"].as_str().is_some_and(|s| s.starts_with(&format!("{function}+"))))
            .map(|(l, c)| (l["object"].as_str().unwrap_or("").to_owned(), c["source"].as_str().unwrap_or("").to_owned()))
            .collect();
        found.sort();
        found.dedup();
        found
    };
    let source = std::fs::read_to_string(lockscope_trace::cache_dir().join("linux-source-6.1/fs/jbd2/transaction.c")).unwrap();
    // The first line after `after` that is `text`, one tab in: the function's own level.
    let line_of = |text: &str, after: usize| source.lines().enumerate().skip(after).find(|(_, l)| *l == format!("\t{text}")).unwrap().0 + 1;
    // jbd2 (a module) takes two spinlocks in one function: each return address says which.
    let dirty = source.lines().position(|l| l.starts_with("int jbd2_journal_dirty_metadata(")).unwrap();
    let expected_jbd2 = [
        ("journal_head.b_state_lock".to_owned(), format!("fs/jbd2/transaction.c:{}", line_of("spin_lock(&jh->b_state_lock);", dirty))),
        ("journal_t.j_list_lock".to_owned(), format!("fs/jbd2/transaction.c:{}", line_of("spin_lock(&journal->j_list_lock);", dirty))),
    ];
    let jbd2 = sites_in("jbd2_journal_dirty_metadata");
    assert!(expected_jbd2.iter().all(|e| jbd2.contains(e)), "{jbd2:?}");
    // _atomic_dec_and_lock is handed its lock: iput's line names it.
    let wrapper = sites_in("_atomic_dec_and_lock");
    assert!(wrapper.iter().any(|(lock, line)| lock == "inode.i_lock" && line.starts_with("fs/inode.c:")), "{wrapper:?}");
}

/// Run-time names (the slab cache read from each lock's page, per-CPU
/// areas, kallsyms) beside the static analyzer's (the kernel source and
/// debug info): where both name a lock they agree, and the names the paper
/// reports still come out.
#[test]
fn run_time_names_agree_with_the_source_and_debug_info() {
    fetch_debug_info();
    for (trace, expected) in [("files", ("inode_hash_lock", "global")), ("mem", ("zone.lock", "member"))] {
        let r = resolved_report(trace, &[], 1);
        let all = locks(&r);
        let by = |l: &Value, source: &str| l["names"].as_array().unwrap().iter().any(|n| n["by"] == source);
        let runtime = |l: &Value| ["slab", "percpu", "kallsyms"].iter().any(|s| by(l, s));
        let acquisitions = |l: &Value| l["acquisitions"].as_u64().unwrap();
        let both: Vec<&Value> = all.iter().filter(|l| l["names_agree"].is_boolean()).collect();
        let agreeing: u64 = both.iter().filter(|l| l["names_agree"] == true).map(|l| acquisitions(l)).sum();
        let compared: u64 = both.iter().map(|l| acquisitions(l)).sum();
        let disagreements: Vec<(&Value, &Value)> =
            both.iter().filter(|l| l["names_agree"] == false).map(|l| (&l["acquisitions"], &l["names"])).take(5).collect();
        assert!(compared > 0 && agreeing as f64 >= 0.95 * compared as f64, "{trace}: {agreeing} of {compared} agree; {disagreements:#?}");
        // Run-time naming needs no source: file churn's locks are in slab
        // objects and named by it (page allocation's zone locks are in the
        // node data memblock gave, which only the source names).
        if trace == "files" {
            let named: u64 = all.iter().filter(|l| runtime(l)).map(acquisitions).sum();
            let total: u64 = all.iter().map(acquisitions).sum();
            assert!(named as f64 >= 0.9 * total as f64, "{trace}: run-time names for {named} of {total} acquisitions");
        }
        let shared: Vec<(&str, &str)> = all
            .iter()
            .filter(|l| l["shared"] == true)
            .map(|l| (l["object"].as_str().unwrap_or(""), l["scope"].as_str().unwrap_or("")))
            .collect();
        assert!(shared.contains(&expected), "{trace}: {expected:?} not among the shared locks: {shared:?}");
    }
    // ext4 is a module: its inodes' locks are named from its own BTF.
    let files = full_report("files");
    let ext4 = locks(&files)
        .iter()
        .filter(|l| l["names"].as_array().unwrap().iter().any(|n| n["by"] == "slab" && n["object"] == "ext4_inode_info"));
    assert!(ext4.count() >= 3, "no lock named in ext4_inode_info");
}

#[test]
fn page_allocation_shares_the_zone_lock() {
    let r = report("mem");
    let zone_lock_sites = ["rmqueue_bulk", "free_pcppages_bulk", "free_one_page", "rmqueue", "__rmqueue_pcplist"];
    let zone = locks(&r).iter().filter(|l| l["shared"] == true).find(|l| {
        l["call_sites"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["site"].as_str())
            .any(|s| zone_lock_sites.iter().any(|z| s.starts_with(&format!("{z}+"))))
    });
    assert!(zone.is_some(), "zone->lock not shared: {r:#}");
}

#[test]
fn interrupt_context_acquisitions_are_counted_and_left_out() {
    let files = report("files");
    let mem = report("mem");
    let filtered = files["counters"]["irq_filtered"].as_u64().unwrap() + mem["counters"]["irq_filtered"].as_u64().unwrap();
    assert!(filtered > 0, "timer interrupts take locks while the workloads run");
    assert_eq!(files["includes_interrupt"], false);
    assert!(files["notes"].as_array().unwrap().iter().any(|n| n == "interrupt context read from the preempt count"));
}

/// Without stacks there are no interrupt frames to see: the BPF side reads
/// the CPU's preempt count (Debian's kernel lists it in kallsyms).
#[test]
fn without_stacks_interrupt_context_is_read_from_the_preempt_count() {
    let r = report("mem-nostacks");
    assert!(r["notes"].as_array().unwrap().iter().any(|n| n == "interrupt context read from the preempt count"), "{:#}", r["notes"]);
    assert!(r["counters"]["irq_filtered"].as_u64().unwrap() > 0, "timer interrupts take locks while the workload runs");
}

fn lockscope_programs(out: &Path, listing: &str) -> usize {
    std::fs::read_to_string(out.join(listing)).unwrap().matches("name lks_").count()
}

#[test]
fn no_program_outlives_its_recording() {
    assert_eq!(lockscope_programs(guest_out(), "progs-after-record.txt"), 0);
}

#[test]
fn no_program_outlives_a_killed_recording() {
    let out = killed_out();
    assert!(lockscope_programs(out, "progs-while-recording.txt") > 0, "the listing does show lockscope's programs");
    assert_eq!(lockscope_programs(out, "progs-after-kill.txt"), 0, "SIGKILL closes the links with the process");
}

/// `--host-system` in the newer kernel, whose 9p needs other modules than
/// 6.1's (the microVM test covers 6.1): the host's Python runs there, on the
/// disk at /work, and what it writes to /out comes back.
#[test]
fn the_host_s_programs_run_in_debian_6_12() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guest-host-system");
    let _ = std::fs::remove_dir_all(&out);
    let script = "/usr/bin/python3 -c 'import os, PIL; print(os.getcwd(), PIL.__name__, os.uname().release)' > /out/python.txt";
    let status = Command::new(LOCKSCOPE)
        .args(["guest", "--kernel", "debian-6.12", "--accel", "tcg", "--cpus", "1", "--host-system", "--out"])
        .arg(&out)
        .args(["--", script])
        .status()
        .unwrap();
    let console = std::fs::read_to_string(out.join("console.log")).unwrap_or_default();
    assert!(status.success(), "{status}; console:\n{console}");
    let printed = std::fs::read_to_string(out.join("python.txt")).unwrap_or_default();
    let words: Vec<&str> = printed.split_whitespace().collect();
    assert_eq!(words[..2], ["/work", "PIL"], "{printed}; console:\n{console}");
    assert!(words[2].starts_with("6.12."), "{printed}");
}
