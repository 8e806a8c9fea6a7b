//! `lockscope calibrate`: does the isolation score rank interference as it happens?

use std::time::Duration;

use anyhow::bail;
use lockscope_experiments::calibrate::{self, CalibrateConfig, Calibration};

use crate::Format;

/// Check the isolation score against measured interference on this machine.
///
/// Runs a built-in ladder of worker/trasher pairs whose interference is
/// known in order, on the host, each as a recorded stress experiment with
/// one trasher (`lockscope stress --help`), so each rung's score and
/// slowdown come from the same run. The rungs: same-directory (two workloads
/// creating files in one directory), same-directory-half-time (the same, the
/// trasher working half of every 100 ms: half the meetings),
/// same-filesystem (in two directories of one file system),
/// other-filesystem (on two file systems) and cpu-only (beside a trasher
/// that only computes, at idle priority). The file systems
/// are two private ext4 images in memory, loop-mounted under --work-dir, so
/// that nothing else on the machine writes to them; where loop devices are
/// missing, the work directory's file system and /dev/shm, with a note.
///
/// Prints each rung's score (100 × (1 − exposure), the worker's isolation
/// from its trasher), its slowdown with the 95% interval, and Spearman's rho
/// between exposure and the slowdown each rung supports (0 where its interval
/// holds zero): 1 when the score ranks the rungs exactly as their slowdowns do. --format json: {"rungs": [{"name", "score",
/// "slowdown", "ci": [lo, hi], ...}], "rho", "rho_p"}, rho_p the chance of a
/// rho as large from a random ordering of the rungs (1 in 120 for a perfect one).
#[derive(clap::Args)]
pub struct Args {
    /// The length of each baseline and stressed window.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    window: Duration,
    /// Stressed windows per rung (6 or more give a 95% interval; with more,
    /// a stray window no longer widens it).
    #[arg(long, default_value_t = 12)]
    cycles: u32,
    /// How often the worker reports its throughput.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "500ms")]
    sample: Duration,
    /// Files each file-create round makes.
    #[arg(long, default_value_t = 1000)]
    files: u32,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    #[command(flatten)]
    instances: crate::platform_args::PlatformArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = CalibrateConfig { window: args.window, cycles: args.cycles, sample_every: args.sample, files: args.files };
    let env = args.instances.env()?;
    let stop = crate::stop_on_signals()?;
    let rungs = 4u64;
    let per_rung = (args.window * (2 + 2 * args.cycles)).as_secs();
    let bar = crate::progress::Steps::new(rungs * per_rung, "{bar:30} {pos}/{len} s  {msg}");
    let calibration = calibrate::run(&cfg, &env, &stop, |i, name, p| {
        bar.set_position(i as u64 * per_rung + p.elapsed_in_run.as_secs().min(per_rung));
        let window = p.window.map_or("warm-up".into(), |(w, n)| format!("window {}/{n}", w + 1));
        bar.set_status(&format!("rung {}/{rungs} {name}: {window}", i + 1), "");
    })?;
    bar.finish_and_clear();
    for note in &calibration.notes {
        eprintln!("note: {note}");
    }
    match args.format {
        Format::Table => print!("{}", table(&calibration)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&calibration)?),
        Format::Csv => print!("{}", csv(&calibration)),
    }
    if !calibration.complete {
        bail!("interrupted: {} of {rungs} rungs measured", calibration.rungs.len());
    }
    Ok(())
}

fn table(c: &Calibration) -> String {
    let rows: Vec<Vec<String>> = c
        .rungs
        .iter()
        .map(|r| vec![r.name.clone(), format!("{:.3}", r.score), r.slowdown.describe(), r.shared_locks.to_string(), r.description.clone()])
        .collect();
    let mut out = lockscope_analysis::render::columns(&["RUNG", "SCORE", "SLOWDOWN [95%]", "SHARED LOCKS", "PAIR"], &rows);
    let rho = c.rho.map_or("n/a (too few rungs, or one side constant)".into(), |r| format!("{r:.2}"));
    let p = c.rho_p.map_or(String::new(), |p| format!(" (as large by chance: p = {p:.3})"));
    out += &format!("\nSpearman's rho, exposure (100 - score) against the slowdown supported (none: 0): {rho}{p}\n");
    out
}

fn csv(c: &Calibration) -> String {
    let mut out = String::from("rung,score,exposure,slowdown,ci_low,ci_high,interference,shared_locks\n");
    for r in &c.rungs {
        let d = &r.slowdown;
        out += &format!(
            "{},{},{},{},{},{},{},{}\n",
            r.name, r.score, r.exposure, d.slowdown, d.ci_low, d.ci_high, d.interference, r.shared_locks
        );
    }
    out
}
