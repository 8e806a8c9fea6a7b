//! What recording costs, side by side in one run, on the file-churn pair:
//! workload throughput untraced, under `lockscope record --mode contention`
//! and under `perf lock record -a`; trace size per minute of each; and the time
//! `lockscope report` takes against `perf lock contention` on those traces.
//!
//! `cargo bench -p lockscope --bench record_overhead` (as root). Settings:
//! LOCKSCOPE_BENCH_SECS (per run, default 10), LOCKSCOPE_BENCH_RUNS (default 3).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

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

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn main() {
    let secs = env_or("LOCKSCOPE_BENCH_SECS", 10);
    let runs = env_or("LOCKSCOPE_BENCH_RUNS", 3);
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let (mut plain, mut traced, mut perfed) = (vec![], vec![], vec![]);
    let (mut trace_bytes, mut perf_bytes) = (0, 0);
    let (mut report_time, mut perf_report_time) = (Duration::ZERO, Duration::ZERO);

    for i in 0..runs {
        eprintln!("run {}/{runs}: untraced, lockscope, perf ({secs} s each)", i + 1);
        let [a, b] = pair(&work, secs);
        let out = run(Command::new("sh").arg("-c").arg(format!("{a} & {b} & wait")));
        plain.push(throughput(&out.stdout));

        let trace = tmp.path().join(format!("t{i}"));
        let out = run(Command::new(LOCKSCOPE).args(["record", "--mode", "contention", "-o"]).arg(&trace).args([
            "--run",
            &format!("a={a}"),
            "--run",
            &format!("b={b}"),
        ]));
        traced.push(throughput(&out.stdout));
        trace_bytes = dir_size(&trace);
        report_time = timed(Command::new(LOCKSCOPE).arg("report").arg(&trace).stdout(std::process::Stdio::null()));

        let perf_data = tmp.path().join(format!("perf{i}.data"));
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

    let base = mean(&plain);
    let per_minute = |bytes: u64| bytes as f64 * 60.0 / secs as f64;
    println!("file-churn pair, {runs} runs of {secs} s, throughput = sum of both workloads' ops/s");
    println!("{:<34} {:>12} {:>10} {:>16}", "configuration", "ops/s", "cost", "trace per minute");
    println!("{:<34} {:>12.0} {:>10} {:>16}", "untraced", base, "-", "-");
    for (name, v, bytes) in [("lockscope record --mode contention", &traced, trace_bytes), ("perf lock record -a", &perfed, perf_bytes)] {
        let cost = 100.0 * (base - mean(v)) / base;
        println!("{:<34} {:>12.0} {:>9.1}% {:>13.1} MB", name, mean(v), cost, per_minute(bytes) / 1e6);
    }
    println!("trace size ratio perf/lockscope: {:.0}x", perf_bytes as f64 / trace_bytes.max(1) as f64);
    println!(
        "report time: lockscope report {:.3} s, perf lock contention {:.3} s",
        report_time.as_secs_f64(),
        perf_report_time.as_secs_f64()
    );
}
