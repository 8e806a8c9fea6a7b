//! What acquire mode costs, measured inside Debian's 6.1 kernel under qemu
//! (`lockscope guest`): the file-create and mmap workloads untraced, under
//! `record --mode acquire --no-stacks --no-hold` (one probe run per
//! acquisition, none per release), `--no-stacks`, with 8-frame and with full
//! stacks, with one stack in 64 sampled (`--stack-sample 64`), and with full
//! stacks but no unlock probes; and beside klockstat (Debian's libbpf-tools:
//! mutexes and rwsems, a stack per acquisition, system-wide) with lockscope
//! on the same lock classes; and the cost of one traced acquisition, from
//! the workload's throughput and as the kernel times each tool's programs
//! (BPF statistics). Under
//! TCG all code is emulated, so the ratios are what carries over to
//! hardware, not the absolute figures.
//!
//! `cargo bench -p lockscope --bench acquire_overhead` (as root; about 20
//! minutes). LOCKSCOPE_BENCH_SECS sets each run's length (default 5),
//! LOCKSCOPE_BENCH_ROUNDS the rounds beside klockstat (default 5).

use std::path::Path;
use std::process::Command;

use lockscope_analysis::stats::Estimate;
use serde_json::Value;

const LOCKSCOPE: &str = env!("CARGO_BIN_EXE_lockscope");
const SCRIPT: &str = include_str!("guest/acquire.sh");
/// The acquire-mode peer, from Debian's libbpf-tools.
const KLOCKSTAT: &str = "/usr/sbin/klockstat";
/// Reads klockstat's programs' run times (the kernel's BPF statistics).
const BPFTOOL: &str = "/usr/sbin/bpftool";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The workload's throughput line (the recorder prints nothing on stdout).
fn throughput(path: &Path) -> Value {
    serde_json::from_str(read(path).lines().find(|l| l.starts_with('{')).expect("a throughput line")).unwrap()
}

/// The trace's report, made here rather than in the guest (where emulation
/// makes it take minutes).
fn report(trace: &Path) -> Value {
    let out = Command::new(LOCKSCOPE).arg("report").arg(trace).args(["--format", "json"]).output().unwrap();
    assert!(out.status.success(), "lockscope report {}: {}", trace.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn main() {
    let secs = std::env::var("LOCKSCOPE_BENCH_SECS").unwrap_or_else(|_| "5".into());
    let rounds: u32 = std::env::var("LOCKSCOPE_BENCH_ROUNDS").map_or(5, |r| r.parse().expect("LOCKSCOPE_BENCH_ROUNDS: a number"));
    let out = tempfile::tempdir().unwrap();
    assert!(Path::new(KLOCKSTAT).is_file(), "{KLOCKSTAT} not found: install libbpf-tools (setup.sh does)");
    let status = Command::new(LOCKSCOPE)
        .args(["guest", "--timeout", "60m", "--bin", KLOCKSTAT, "--bin", BPFTOOL, "--out"])
        .arg(out.path())
        .arg("--")
        .arg(format!("SECS={secs} ROUNDS={rounds}\n{SCRIPT}"))
        .status()
        .unwrap();
    assert!(status.success(), "guest run failed; see {}", out.path().join("console.log").display());

    println!("acquire mode inside Debian 6.1 under qemu; {secs} s per run; one workload instance");
    println!(
        "{:<12} {:<24} {:>12} {:>9} {:>14} {:>16} {:>16}",
        "workload", "configuration", "ops/s", "slowdown", "acq. per op", "ns per acq.", "BPF ns per acq."
    );
    for name in ["file-create", "mmap"] {
        let base = throughput(&out.path().join(format!("{name}-untraced.json")))["ops_per_sec"].as_f64().unwrap();
        println!("{:<12} {:<24} {:>12.0} {:>9} {:>14} {:>16}", name, "untraced", base, "-", "-", "-");
        let row = |label: &str, Traced { rate, per_op, bpf_ns }: Traced| {
            let ns_per_acq = ns_per_acquisition(base, rate, per_op);
            println!(
                "{:<12} {:<24} {:>12.0} {:>8.1}% {:>14.1} {:>16.0} {:>16.0}",
                name,
                label,
                rate,
                100.0 * (base - rate) / base,
                per_op,
                ns_per_acq,
                bpf_ns
            );
        };
        for (config, label) in [
            ("nohold", "acquire, no stacks/hold"),
            ("acquire", "acquire, no stacks"),
            ("shallow", "acquire, 8-frame stacks"),
            ("stacks", "acquire with stacks"),
            ("sampled", "stacks, 1 in 64 sampled"),
            ("stacks-nohold", "stacks, no hold"),
        ] {
            row(label, traced(out.path(), name, config));
        }
    }

    // Beside its peer, on the lock classes klockstat traces, in alternating
    // rounds, each against its own untraced run: klockstat's acquisitions per
    // operation are those lockscope counted on them in the same round.
    println!("\nbeside klockstat (mutexes and rwsems, a stack each), {rounds} alternating rounds: ns per acquisition, median [range]");
    println!("{:<12} {:>30} {:>30} {:>30}", "workload", "lockscope --locks mutex,rwsem", "klockstat", "lockscope / klockstat");
    let range = |v: &[f64], digits: usize| {
        let e = Estimate::of(v).expect("rounds ran");
        let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        format!("{:.*} [{:.*}, {:.*}]", digits, e.median, digits, lo, digits, hi)
    };
    let mut bpf_rows = vec![];
    for name in ["file-create", "mmap"] {
        let (mut ours, mut theirs, mut ratios) = (vec![], vec![], vec![]);
        let (mut bpf_ours, mut bpf_theirs, mut bpf_ratios) = (vec![], vec![], vec![]);
        for round in 1..=rounds {
            let run = format!("{name}.{round}");
            let base = throughput(&out.path().join(format!("{run}-untraced.json")))["ops_per_sec"].as_f64().unwrap();
            let Traced { rate, per_op, bpf_ns } = traced(out.path(), &run, "mutex-rwsem");
            let klockstat = throughput(&out.path().join(format!("{run}-klockstat.json")))["ops_per_sec"].as_f64().unwrap();
            let (a, b) = (ns_per_acquisition(base, rate, per_op), ns_per_acquisition(base, klockstat, per_op));
            ours.push(a);
            theirs.push(b);
            ratios.push(a / b);
            // The kernel's own timing: each tool's program time over the acquisitions it served.
            let (a, b) = (bpf_ns, klockstat_bpf_ns(out.path(), &run, per_op));
            bpf_ours.push(a);
            bpf_theirs.push(b);
            bpf_ratios.push(a / b);
        }
        println!("{:<12} {:>30} {:>30} {:>30}", name, range(&ours, 0), range(&theirs, 0), range(&ratios, 2));
        bpf_rows.push((name, bpf_ours, bpf_theirs, bpf_ratios));
    }
    println!("\nthe same rounds, BPF program time per acquisition as the kernel timed it (bpf_stats): ns, median [range]");
    println!("{:<12} {:>30} {:>30} {:>30}", "workload", "lockscope --locks mutex,rwsem", "klockstat", "lockscope / klockstat");
    for (name, ours, theirs, ratios) in bpf_rows {
        println!("{:<12} {:>30} {:>30} {:>30}", name, range(&ours, 0), range(&theirs, 0), range(&ratios, 2));
    }
}

/// klockstat's program time (bpftool's listing as the workload ended: the
/// guest's only BPF programs then are klockstat's) per acquisition: the
/// workload's operations, times the acquisitions per operation lockscope
/// counted in the same round.
fn klockstat_bpf_ns(dir: &Path, run: &str, per_op: f64) -> f64 {
    let progs: Value = serde_json::from_str(&read(&dir.join(format!("{run}-klockstat.progs.json")))).unwrap();
    let progs = progs.as_array().unwrap();
    assert!(!progs.is_empty(), "no program listed while klockstat ran");
    let run_time: f64 = progs.iter().map(|p| p["run_time_ns"].as_f64().unwrap_or(0.0)).sum();
    assert!(run_time > 0.0, "klockstat's programs not timed: {progs:?}");
    let ops = throughput(&dir.join(format!("{run}-klockstat.json")))["ops"].as_f64().unwrap();
    run_time / (ops * per_op)
}

/// A traced run, as its throughput and its trace tell it.
struct Traced {
    /// Operations per second.
    rate: f64,
    /// Acquisitions per operation.
    per_op: f64,
    /// lockscope's program time (`record --time-programs`) per acquisition it recorded.
    bpf_ns: f64,
}

fn traced(dir: &Path, run: &str, config: &str) -> Traced {
    let result = throughput(&dir.join(format!("{run}-{config}.json")));
    let report = report(&dir.join(format!("{run}-{config}.trace")));
    let run_time = report["recorder_cost"]["run_time_ns"].as_f64().expect("the recorder's programs timed");
    Traced {
        rate: result["ops_per_sec"].as_f64().unwrap(),
        per_op: acquisitions(&report) / result["ops"].as_f64().unwrap(),
        bpf_ns: run_time / acquisitions(&report),
    }
}

/// The acquisitions a trace recorded, those in interrupt context included.
fn acquisitions(report: &Value) -> f64 {
    report["workloads"][0]["acquisitions"].as_f64().unwrap() + report["counters"]["irq_filtered"].as_f64().unwrap()
}

/// The extra time per operation of a traced run, spread over the
/// acquisitions it made.
fn ns_per_acquisition(untraced: f64, traced: f64, per_op: f64) -> f64 {
    (1.0 / traced - 1.0 / untraced) * 1e9 / per_op
}
