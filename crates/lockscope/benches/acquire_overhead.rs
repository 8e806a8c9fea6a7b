//! What acquire mode costs, measured inside Debian's 6.1 kernel under qemu
//! (`lockscope guest`): the file-create and mmap workloads untraced, under
//! `record --mode acquire --no-stacks --no-hold` (one probe run per
//! acquisition, none per release), `--no-stacks`, with 8-frame and with full
//! stacks, with one stack in 64 sampled (`--stack-sample 64`), and with full
//! stacks but no unlock probes; and beside klockstat (Debian's libbpf-tools:
//! mutexes and rwsems, a stack per acquisition, system-wide) with lockscope
//! on the same lock classes, with lock lifetimes and without (klockstat
//! keeps none); and the cost of one traced acquisition, from
//! the workload's throughput and as the kernel times each tool's programs
//! (BPF statistics). Under
//! TCG all code is emulated, so the ratios are what carries over to
//! hardware, not the absolute figures.
//!
//! `cargo bench -p lockscope --bench acquire_overhead` (as root; about 25
//! minutes). LOCKSCOPE_BENCH_SECS sets each run's length (default 5),
//! LOCKSCOPE_BENCH_ROUNDS the rounds beside klockstat (default 5).

use std::collections::BTreeMap;
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
        let row = |label: &str, Traced { rate, per_op, bpf }: Traced| {
            let ns_per_acq = ns_per_acquisition(base, rate, per_op);
            println!(
                "{:<12} {:<24} {:>12.0} {:>8.1}% {:>14.1} {:>16.0} {:>16.0}",
                name,
                label,
                rate,
                100.0 * (base - rate) / base,
                per_op,
                ns_per_acq,
                bpf.total()
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
    let range = |v: &[f64], digits: usize| {
        let e = Estimate::of(v).expect("rounds ran");
        let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        format!("{:.*} [{:.*}, {:.*}]", digits, e.median, digits, lo, digits, hi)
    };
    let header = || {
        println!(
            "{:<12} {:<42} {:>24} {:>24} {:>22}",
            "workload", "lockscope configuration", "lockscope", "klockstat", "lockscope / klockstat"
        )
    };
    header();
    let mut bpf_rows = vec![];
    for name in ["file-create", "mmap"] {
        for (config, label) in PEER_CONFIGS {
            let (mut ours, mut theirs, mut ratios) = (vec![], vec![], vec![]);
            let (mut bpf_ours, mut bpf_theirs, mut bpf_ratios) = (vec![], vec![], vec![]);
            let (mut programs_ours, mut programs_theirs) = (ProgramTimes::default(), ProgramTimes::default());
            for round in 1..=rounds {
                let run = format!("{name}.{round}");
                let base = throughput(&out.path().join(format!("{run}-untraced.json")))["ops_per_sec"].as_f64().unwrap();
                let Traced { rate, per_op, bpf } = traced(out.path(), &run, config);
                let klockstat = throughput(&out.path().join(format!("{run}-klockstat.json")))["ops_per_sec"].as_f64().unwrap();
                let (a, b) = (ns_per_acquisition(base, rate, per_op), ns_per_acquisition(base, klockstat, per_op));
                ours.push(a);
                theirs.push(b);
                ratios.push(a / b);
                // The kernel's own timing: each tool's program time over the acquisitions it served.
                let klockstat_bpf = klockstat_bpf(out.path(), &run, per_op);
                let (a, b) = (bpf.total(), klockstat_bpf.total());
                bpf_ours.push(a);
                bpf_theirs.push(b);
                bpf_ratios.push(a / b);
                programs_ours.add(bpf);
                programs_theirs.add(klockstat_bpf);
            }
            println!("{:<12} {:<42} {:>24} {:>24} {:>22}", name, label, range(&ours, 0), range(&theirs, 0), range(&ratios, 2));
            bpf_rows.push((name, label, bpf_ours, bpf_theirs, bpf_ratios, programs_ours, programs_theirs));
        }
    }
    println!("\nthe same rounds, BPF program time per acquisition as the kernel timed it (bpf_stats): ns, median [range]");
    header();
    for (name, label, ours, theirs, ratios, ..) in &bpf_rows {
        println!("{:<12} {:<42} {:>24} {:>24} {:>22}", name, label, range(ours, 0), range(theirs, 0), range(ratios, 2));
    }
    println!("\nwhere that time goes: each program's ns per acquisition, median [range] over the rounds");
    for (name, label, _, _, _, programs_ours, programs_theirs) in &bpf_rows {
        // klockstat's programs once per workload: the same in every configuration's rows.
        let klockstat_once = *label == PEER_CONFIGS[0].1;
        let tools = [(*label, Some(programs_ours)), ("klockstat", klockstat_once.then_some(programs_theirs))];
        for (tool, programs) in tools.into_iter().filter_map(|(t, p)| Some((t, p?))) {
            for (program, ns) in programs.dearest_first() {
                println!("{:<12} {:<42} {:<32} {:>24}", name, tool, program, range(ns, 0));
            }
        }
    }
}

/// lockscope's configurations beside klockstat (scenario name in
/// guest/acquire.sh, label): the same lock classes, with stacks; with lock
/// lifetimes and, as klockstat, without.
const PEER_CONFIGS: [(&str, &str); 2] =
    [("mutex-rwsem", "--locks mutex,rwsem"), ("mutex-rwsem-no-lifetimes", "--locks mutex,rwsem --no-lifetimes")];

/// Each program's time per acquisition, one value per round (a program that
/// did not run in a round counts 0 there).
#[derive(Default)]
struct ProgramTimes {
    rounds: usize,
    by_program: BTreeMap<String, Vec<f64>>,
}

impl ProgramTimes {
    fn add(&mut self, round: PerAcquisition) {
        for (program, ns) in round.0 {
            self.by_program.entry(program).or_insert_with(|| vec![0.0; self.rounds]).push(ns);
        }
        self.rounds += 1;
        for values in self.by_program.values_mut() {
            values.resize(self.rounds, 0.0);
        }
    }

    fn dearest_first(&self) -> Vec<(&str, &[f64])> {
        let mut programs: Vec<(&str, &[f64])> = self.by_program.iter().map(|(p, v)| (p.as_str(), v.as_slice())).collect();
        programs.sort_by(|a, b| median(b.1).total_cmp(&median(a.1)));
        programs
    }
}

fn median(v: &[f64]) -> f64 {
    Estimate::of(v).map_or(0.0, |e| e.median)
}

/// BPF time per acquisition, by program.
struct PerAcquisition(Vec<(String, f64)>);

impl PerAcquisition {
    fn of(programs: impl Iterator<Item = (String, f64)>, acquisitions: f64) -> PerAcquisition {
        PerAcquisition(programs.map(|(name, run_time_ns)| (name, run_time_ns / acquisitions)).collect())
    }

    fn total(&self) -> f64 {
        self.0.iter().map(|(_, ns)| ns).sum()
    }
}

/// klockstat's program time (bpftool's listing as the workload ended: the
/// guest's only BPF programs then are klockstat's) per acquisition: the
/// workload's operations, times the acquisitions per operation lockscope
/// counted in the same round.
fn klockstat_bpf(dir: &Path, run: &str, per_op: f64) -> PerAcquisition {
    let progs: Value = serde_json::from_str(&read(&dir.join(format!("{run}-klockstat.progs.json")))).unwrap();
    let progs = progs.as_array().unwrap();
    assert!(!progs.is_empty(), "no program listed while klockstat ran");
    let ops = throughput(&dir.join(format!("{run}-klockstat.json")))["ops"].as_f64().unwrap();
    let times = PerAcquisition::of(
        progs.iter().map(|p| (p["name"].as_str().unwrap_or("?").to_owned(), p["run_time_ns"].as_f64().unwrap_or(0.0))),
        ops * per_op,
    );
    assert!(times.total() > 0.0, "klockstat's programs not timed: {progs:?}");
    times
}

/// A traced run, as its throughput and its trace tell it.
struct Traced {
    /// Operations per second.
    rate: f64,
    /// Acquisitions per operation.
    per_op: f64,
    /// lockscope's program time (`record --time-programs`) per acquisition it recorded.
    bpf: PerAcquisition,
}

fn traced(dir: &Path, run: &str, config: &str) -> Traced {
    let result = throughput(&dir.join(format!("{run}-{config}.json")));
    let report = report(&dir.join(format!("{run}-{config}.trace")));
    let programs = report["recorder_cost"]["programs"].as_array().expect("the recorder's programs timed");
    let acquisitions = acquisitions(&report);
    Traced {
        rate: result["ops_per_sec"].as_f64().unwrap(),
        per_op: acquisitions / result["ops"].as_f64().unwrap(),
        bpf: PerAcquisition::of(
            programs.iter().map(|p| (p["name"].as_str().unwrap().to_owned(), p["run_time_ns"].as_f64().unwrap())),
            acquisitions,
        ),
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
