//! Hand-made traces for unit tests: small enough to check by hand.

use lockscope_trace::*;

use crate::Options;

pub fn workload(id: u32, name: &str, secs: u64) -> Workload {
    Workload {
        id,
        name: name.into(),
        selector: Selector::Pid { pid: id },
        pids: vec![id],
        started_ns: None,
        run_time_ns: secs * 1_000_000_000,
        exit: None,
        irq_filtered: 0,
    }
}

pub fn record(workload: u32, lock_addr: u64, generation: u32, count: u64, stack_id: i32) -> LockRecord {
    LockRecord {
        workload,
        tgid: workload,
        lock_addr,
        generation,
        flags: lock_flags::SPIN,
        stack_id,
        count,
        wait_total_ns: count * 10,
        wait_max_ns: 10,
        hold_total_ns: 0,
        hold_max_ns: 0,
        failed_trylocks: 0,
        first_ns: 0,
        in_interrupt: false,
    }
}

pub const OPTIONS: Options = Options { top_sites: 3, include_interrupt: false };

/// A hand-made trace: lock A shared by both workloads, lock B private to
/// w1 (w2 took it only in interrupt context), and address C reused
/// (generation 1) by w2 after w1 used it: not shared.
pub fn trace() -> Trace {
    const A: u64 = 0xffffffff82000010;
    const B: u64 = 0xffff888000001000;
    const C: u64 = 0xffff888000002000;
    Trace {
        meta: TraceMeta {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            lockscope_version: "t".into(),
            kernel_release: "k".into(),
            hostname: "h".into(),
            mode: Mode::Contention,
            hook: "tp_btf".into(),
            attached: vec![],
            notes: vec![],
            started_unix_ns: 0,
            ended_unix_ns: 10_000_000_000,
            end_reason: EndReason::Duration,
            kallsyms_all: true,
            workloads: vec![workload(1, "w1", 10), workload(2, "w2", 5)],
            counters: Counters::default(),
            files: vec![],
            label: None,
            runqueues: vec![],
            sites_from: None,
            recorder_cost: None,
            document_sha256: None,
        },
        records: vec![
            record(1, A, 0, 100, 1),
            record(1, A, 0, 20, 2),
            record(2, A, 0, 50, 1),
            record(1, B, 0, 7, 2),
            record(1, C, 0, 3, 2),
            record(2, C, 1, 4, 2),
            LockRecord { in_interrupt: true, ..record(2, B, 0, 9, 2) },
        ],
        stacks: vec![
            Stack { id: 1, frames: vec![0xffffffff81000104, 0xffffffff81000204] },
            Stack { id: 2, frames: vec![0xffffffff81000204] },
        ],
        symbols: vec![
            Symbol { addr: 0xffffffff81000100, size: 0x100, name: "_raw_spin_lock".into(), module: None, kind: SymbolKind::Text },
            Symbol { addr: 0xffffffff81000200, size: 0x100, name: "iput".into(), module: None, kind: SymbolKind::Text },
            Symbol { addr: 0xffffffff82000000, size: 0x40, name: "inode_hash_lock".into(), module: None, kind: SymbolKind::Data },
        ],
        sites: vec![],
        places: vec![],
        names: vec![],
        unnamed: vec![],
        held_waits: vec![],
    }
}

/// A resolved call site in fs/inode.c's iput: a member lock of `object`, else the global `name`.
pub fn site(stack_id: i32, scope: Scope, object: Option<&str>, name: &str) -> StackSite {
    StackSite {
        stack_id,
        function: "iput".into(),
        file: Some("fs/inode.c".into()),
        line: Some(1700 + stack_id as u32),
        scope,
        object: object.map(str::to_owned),
        member: object.map(|_| name.to_owned()),
        variable: object.is_none().then(|| name.to_owned()),
        lock_type: Some("spinlock_t".into()),
        subsystem: Some("fs".into()),
        method: SiteMethod::Function,
        candidates: 1,
        reason: None,
    }
}
