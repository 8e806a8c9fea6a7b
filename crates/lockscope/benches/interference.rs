//! Whether lockscope's interference figures repeat: the calibration ladder
//! run several times (each run's score, slowdown and Spearman's rho), and one
//! stress cell run several times (each run's median slowdown against the
//! others' 95% intervals), on a private file system (the default) and on
//! the work directory's (`--fs work-dir`), the two alternating.
//!
//! `cargo bench -p lockscope --bench interference` (as root). Settings:
//! LOCKSCOPE_BENCH_RUNS (default 3), LOCKSCOPE_BENCH_ONLY (`calibrate` or
//! `stress`: that half only).

use std::process::Command;

use serde_json::Value;

const LOCKSCOPE: &str = env!("CARGO_BIN_EXE_lockscope");

fn runs() -> usize {
    std::env::var("LOCKSCOPE_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

fn json_of(cmd: &mut Command) -> Value {
    let out = cmd.output().expect("lockscope runs");
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn pct(v: &Value) -> String {
    format!("{:+.1}%", 100.0 * v.as_f64().unwrap_or(f64::NAN))
}

fn calibration() {
    println!("calibrate (defaults), {} runs", runs());
    println!("{:<6} {:<24} {:>9} {:>9} {:>22}", "run", "rung", "score", "slowdown", "95% interval");
    let mut rhos = vec![];
    for run in 1..=runs() {
        let result = json_of(Command::new(LOCKSCOPE).args(["calibrate", "--format", "json"]));
        for r in result["rungs"].as_array().unwrap() {
            let ci = format!("[{}, {}]", pct(&r["ci"][0]), pct(&r["ci"][1]));
            println!(
                "{run:<6} {:<24} {:>9.3} {:>9} {ci:>22}",
                r["name"].as_str().unwrap(),
                r["score"].as_f64().unwrap(),
                pct(&r["slowdown"])
            );
        }
        rhos.push(result["rho"].as_f64().unwrap_or(f64::NAN));
        println!("{run:<6} rho {:.2} (p = {:.3})", rhos[run - 1], result["rho_p"].as_f64().unwrap_or(f64::NAN));
    }
    println!("rho over runs: {rhos:.2?}\n");
}

/// The file systems the stress cell runs on: a private one, and the work directory's.
const FILE_SYSTEMS: [(&str, &[&str]); 2] = [("private", &["--fs", "private"]), ("work directory's", &["--fs", "work-dir"])];

fn stress_cell() {
    let dir = tempfile::tempdir().unwrap();
    // Each invocation's interval is over its own --runs: whether it holds
    // the next invocation's estimate is what this checks.
    let args = ["stress", "--platform", "host", "--trashers", "1", "--window", "3s", "--cycles", "2", "--runs", "3"];
    println!("stress {} (worker and trasher defaults), {} times on each file system, alternating", args[1..].join(" "), runs());
    let mut levels: [Vec<Value>; 2] = Default::default();
    for run in 1..=runs() {
        for (fs, (name, extra)) in FILE_SYSTEMS.iter().enumerate() {
            let out = dir.path().join(format!("{fs}-{run}"));
            let done = Command::new(LOCKSCOPE).args(args).args(*extra).arg("-o").arg(&out).output().expect("lockscope runs");
            assert!(done.status.success(), "stress failed: {}", String::from_utf8_lossy(&done.stderr));
            let result: Value = serde_json::from_str(&std::fs::read_to_string(out.join("stress.json")).unwrap()).unwrap();
            let level = result["series"][0]["levels"][0].clone();
            println!(
                "run {run}, {name} file system: baseline {:.0}/s, slowdown {} [{}, {}] over {} runs ({} windows)",
                result["series"][0]["baseline"].as_f64().unwrap_or(f64::NAN),
                pct(&level["slowdown"]),
                pct(&level["ci_low"]),
                pct(&level["ci_high"]),
                level["runs"],
                level["windows"]
            );
            for note in result["notes"].as_array().into_iter().flatten() {
                println!("  note: {}", note.as_str().unwrap_or_default());
            }
            levels[fs].push(level);
        }
    }
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap();
    for ((name, _), levels) in FILE_SYSTEMS.iter().zip(&levels) {
        for (i, a) in levels.iter().enumerate() {
            let outside: Vec<usize> = (0..levels.len())
                .filter(|&j| j != i && !(f(&levels[j], "ci_low") <= f(a, "slowdown") && f(a, "slowdown") <= f(&levels[j], "ci_high")))
                .map(|j| j + 1)
                .collect();
            // Calibrated 95% intervals from 3 runs meet this in about 2 of 3
            // such triples by chance alone, and overlap pairwise in 99 of 100.
            let apart: Vec<usize> = (0..levels.len())
                .filter(|&j| j != i && (f(&levels[j], "ci_low") > f(a, "ci_high") || f(a, "ci_low") > f(&levels[j], "ci_high")))
                .map(|j| j + 1)
                .collect();
            println!(
                "{name} file system: run {}'s median inside every other run's interval: {}; its interval overlaps theirs: {}",
                i + 1,
                if outside.is_empty() { "yes".into() } else { format!("no (outside run {outside:?})") },
                if apart.is_empty() { "yes".into() } else { format!("no (apart from run {apart:?})") }
            );
        }
    }
}

fn main() {
    let only = std::env::var("LOCKSCOPE_BENCH_ONLY").unwrap_or_default();
    if only != "stress" {
        calibration();
    }
    if only != "calibrate" {
        stress_cell();
    }
}
