//! What recording costs, side by side in one run, on the file-churn pair:
//! workload throughput untraced, under `lockscope record --mode contention`
//! and under `perf lock record -a`; trace size per minute of each; and the time
//! `lockscope report` takes against `perf lock contention` on those traces.
//!
//! `cargo bench -p lockscope --bench record_overhead` (as root). Settings:
//! LOCKSCOPE_BENCH_SECS (per run, default 10), LOCKSCOPE_BENCH_RUNS (default
//! 6: enough for a 95% interval), LOCKSCOPE_BENCH_OTHER (another lockscope
//! binary, e.g. an older build, recorded in the same rounds for a side-by-side
//! comparison). Each round runs every configuration once; a configuration's
//! cost is the median over rounds of its throughput against the same round's
//! untraced run, with its interval, so a baseline that moves between rounds
//! moves both sides of each ratio. Each run works on an ext4 file system in
//! memory made for it: on one file system for all, each run would leave the
//! next a slower one (an ext4 without a journal, as this machine's root, skips
//! every recently deleted inode), and the configurations run later in a round
//! would pay for the earlier ones.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lockscope_analysis::stats::{median, Estimate};
use lockscope_experiments::scratch_fs::{ScratchFs, PRIVATE_FS_MIB};

const LOCKSCOPE: &str = env!("CARGO_BIN_EXE_lockscope");

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The shell command running the pair; each workload prints a JSON line.
fn pair(dir: &Path, secs: u64) -> [String; 2] {
    ["a", "b"].map(|n| format!("{LOCKSCOPE} workload file-churn --dir {}/{n} --duration {secs}s", dir.display()))
}

/// Total ops/s of the workloads' JSON lines in `stdout`.
fn throughput(stdout: &[u8]) -> f64 {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["ops_per_sec"].as_f64())
        .sum()
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("command runs");
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn dir_size(path: &Path) -> u64 {
    if path.is_dir() {
        std::fs::read_dir(path).unwrap().flatten().map(|e| dir_size(&e.path())).sum()
    } else {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }
}

fn timed(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    run(cmd);
    start.elapsed()
}

/// Records the pair with `binary`; returns the throughput and the trace.
fn record_with(binary: &str, trace: &Path, [a, b]: &[String; 2]) -> f64 {
    let out = run(Command::new(binary).args(["record", "--mode", "contention", "-o"]).arg(trace).args([
        "--run",
        &format!("a={a}"),
        "--run",
        &format!("b={b}"),
    ]));
    throughput(&out.stdout)
}

fn main() {
    let secs = env_or("LOCKSCOPE_BENCH_SECS", 10);
    let runs = env_or("LOCKSCOPE_BENCH_RUNS", 6);
    let other = std::env::var("LOCKSCOPE_BENCH_OTHER").ok();
    let tmp = tempfile::tempdir().unwrap();
    // The pair of a run, on a file system of its own, removed with the returned guard
    // (which must go before the next is made: they share a mount point and an image name).
    let fresh_pair = || {
        let fs = ScratchFs::create("record-overhead", &tmp.path().join("work"), PRIVATE_FS_MIB).expect("a private file system");
        (pair(fs.path(), secs), fs)
    };
    let (mut plain, mut traced, mut perfed, mut other_traced) = (vec![], vec![], vec![], vec![]);
    let (mut trace_bytes, mut perf_bytes) = (0, 0);
    let (mut report_time, mut perf_report_time) = (Duration::ZERO, Duration::ZERO);

    for i in 0..runs {
        eprintln!(
            "round {}/{runs}: untraced, lockscope, {}perf ({secs} s each)",
            i + 1,
            if other.is_some() { "the other build, " } else { "" }
        );
        {
            let ([a, b], _fs) = fresh_pair();
            let out = run(Command::new("sh").arg("-c").arg(format!("{a} & {b} & wait")));
            plain.push(throughput(&out.stdout));
        }

        let trace = tmp.path().join(format!("t{i}"));
        traced.push(record_with(LOCKSCOPE, &trace, &fresh_pair().0));
        if let Some(binary) = &other {
            other_traced.push(record_with(binary, &tmp.path().join(format!("o{i}")), &fresh_pair().0));
        }
        trace_bytes = dir_size(&trace);
        report_time = timed(Command::new(LOCKSCOPE).arg("report").arg(&trace).stdout(std::process::Stdio::null()));

        let perf_data = tmp.path().join(format!("perf{i}.data"));
        let ([a, b], _fs) = fresh_pair();
        let out = run(Command::new("perf").args(["lock", "record", "-a", "-o"]).arg(&perf_data).args([
            "--",
            "sh",
            "-c",
            &format!("{a} & {b} & wait"),
        ]));
        perfed.push(throughput(&out.stdout));
        perf_bytes = dir_size(&perf_data);
        perf_report_time = timed(
            Command::new("perf")
                .args(["lock", "contention", "-i"])
                .arg(&perf_data)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        );
    }

    let per_minute = |bytes: u64| bytes as f64 * 60.0 / secs as f64;
    println!("file-churn pair, {runs} rounds of {secs} s, throughput = sum of both workloads' ops/s (median over rounds)");
    println!("{:<36} {:>10} {:>30} {:>16}", "configuration", "ops/s", "cost vs the round's untraced", "trace per minute");
    println!("{:<36} {:>10.0} {:>30} {:>16}", "untraced", median(&plain).unwrap_or(f64::NAN), "-", "-");
    let mut rows = vec![("lockscope record --mode contention", &traced, Some(trace_bytes))];
    if other.is_some() {
        rows.push(("the other build (LOCKSCOPE_BENCH_OTHER)", &other_traced, None));
    }
    rows.push(("perf lock record -a", &perfed, Some(perf_bytes)));
    for (name, v, bytes) in rows {
        let costs: Vec<f64> = v.iter().zip(&plain).map(|(t, p)| 1.0 - t / p).collect();
        let cost = Estimate::of(&costs).map_or("-".into(), |e| {
            format!("{:+.1}% [{:+.1}%, {:+.1}%] ({:.0}%)", 100.0 * e.median, 100.0 * e.ci_low, 100.0 * e.ci_high, 100.0 * e.coverage)
        });
        let size = bytes.map_or("-".into(), |b| format!("{:.1} MB", per_minute(b) / 1e6));
        println!("{:<36} {:>10.0} {:>30} {:>16}", name, median(v).unwrap_or(f64::NAN), cost, size);
    }
    println!("trace size ratio perf/lockscope: {:.0}x", perf_bytes as f64 / trace_bytes.max(1) as f64);
    println!(
        "report time: lockscope report {:.3} s, perf lock contention {:.3} s",
        report_time.as_secs_f64(),
        perf_report_time.as_secs_f64()
    );
}
