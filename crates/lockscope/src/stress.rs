//! `lockscope stress`: the interference experiment, on each platform asked for.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use lockscope_analysis::stats::CONFIDENCE;
use lockscope_experiments::stress::{self, StressConfig, Unobserved};
use lockscope_platform::PlatformKind;

/// Measure interference: how much slower a worker runs beside trashers,
/// each on its own core where cores allow (paper sections 5.3 and 7).
///
/// After a warm-up (left out), baseline windows (trashers paused) alternate
/// with stressed windows (1 trasher running, --cycles times; then 2; up to
/// --trashers), each measured from when its trashers were paused or let run
/// (a runtime's pause takes up to 0.1 s). Each stressed window is compared
/// with the baselines either side of it, so the worker's own drift over the
/// run cancels. Each run (--runs) starts every instance afresh, and runs
/// differ more than the windows of one run do, so each trasher count's
/// slowdown is the median over every run's windows with a 95% Student's t
/// interval over the runs' medians; from one run, the median over its
/// windows with their order-statistic interval (95% from 6 windows on),
/// which does not hold the next run's spread. A slowdown whose interval
/// holds zero is reported as none. The worker
/// reports its throughput every --sample; a worker whose operations take
/// longer gets longer windows, and says so.
///
/// A trasher slows a worker through more than kernel locks: CPU time, caches
/// and memory bandwidth. --control runs a workload that has a trasher's CPU
/// and memory traffic but takes no kernel lock (`trasher --target memory`
/// stands in for `--target mm`; `--target cpu` only computes), on the first
/// trasher's CPU, in windows of its own beside each of the first trasher's;
/// stress then prints the control's slowdown and the trasher's beyond it,
/// cycle by cycle: what the trasher's locks, not its presence, can explain.
///
/// Writes to --output: stress.csv (every sample: platform, run, t, window,
/// trashers running, control running, ops/s), stress.json (windows,
/// baselines and each trasher count's slowdown with ci_low/ci_high; the
/// control's, and one trasher's beyond it), and stress.svg / stress.png
/// (throughput over time, one line per platform, baselines dashed, stressed
/// windows shaded grey, control windows blue).
///
/// The paper's scale: --trashers 7 --window 1m --runs 3. Ctrl-C stops the
/// experiment, removes everything it started, and writes what was measured.
///
/// Example: lockscope stress --platform host,runc --worker 'file-create --files 2000' --trasher 'trasher --target fs'
#[derive(clap::Args)]
pub struct Args {
    /// Platforms to run on, in turn (host, runc, gvisor, microvm; see `lockscope doctor`).
    #[arg(long, value_delimiter = ',', default_value = "host")]
    platform: Vec<String>,
    /// The worker: a built-in workload and its arguments (`lockscope workload --help`),
    /// without --duration or --report-every, which stress sets.
    #[arg(long, default_value = "file-create --files 2000")]
    worker: String,
    /// Each trasher: a built-in workload and its arguments.
    #[arg(long, default_value = "trasher --target fs")]
    trasher: String,
    /// A control: a built-in workload with a trasher's CPU and memory
    /// traffic and no kernel lock (e.g. 'trasher --target memory').
    #[arg(long)]
    control: Option<String>,
    /// Trasher counts measured: 1 up to this.
    #[arg(long, default_value_t = 2)]
    trashers: u32,
    /// The length of each baseline and each stressed window.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "4s")]
    window: Duration,
    /// Stressed windows per trasher count and run.
    #[arg(long, default_value_t = 2)]
    cycles: u32,
    /// The worker's time alone before the first window, left out.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "4s")]
    warmup: Duration,
    /// How often the worker reports its throughput.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    sample: Duration,
    /// Repetitions per platform, each starting every instance afresh: their
    /// spread is what the interval measures (2 or more).
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Directory for stress.csv, stress.json, stress.svg and stress.png.
    #[arg(short, long, default_value = "lockscope-stress")]
    output: PathBuf,
    #[command(flatten)]
    instances: crate::platform_args::PlatformArgs,
    /// The file system the instances work on. `private` (the default): an
    /// ext4 file system in memory, a new one for each run, mounted under
    /// --work-dir and removed after it (as `calibrate`'s rungs and the
    /// study's cells are): no other writer shares its journal, no disk
    /// latency moves the worker, and each run's is new, so runs agree and
    /// their spread is in the interval. `work-dir`: --work-dir's own file
    /// system, whose locks the file workloads then measure; on an ext4
    /// without a journal (as some cloud images' root), recently deleted
    /// inodes are not reused for a minute and each creation walks past them,
    /// so file workloads slow with every run before (stress notes it).
    #[arg(long, value_enum, default_value_t = FileSystem::Private)]
    fs: FileSystem,
    /// Also record the worker and every trasher, each followed from its
    /// start, into OUTPUT/stress.trace (best mode available): the locks they
    /// share and the slowdown come from the same run, and the pair's
    /// isolation score is printed beside the slowdown. See `lockscope report`.
    #[arg(long)]
    record: bool,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum FileSystem {
    Private,
    WorkDir,
}

fn split(what: &str, text: &str) -> anyhow::Result<Vec<String>> {
    match shlex::split(text) {
        Some(args) if !args.is_empty() => Ok(args),
        _ => bail!("--{what} {text:?}: expected a workload and its arguments, e.g. 'file-create --files 2000'"),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let platforms = args.platform.iter().map(|p| PlatformKind::parse(p)).collect::<Result<Vec<_>, _>>()?;
    let cfg = StressConfig {
        platforms,
        worker: split("worker", &args.worker)?,
        trasher: split("trasher", &args.trasher)?,
        control: args.control.as_deref().map(|c| split("control", c)).transpose()?,
        trashers: args.trashers,
        window: args.window,
        cycles: args.cycles,
        warmup: args.warmup,
        sample_every: args.sample,
        runs: args.runs,
        private_fs: args.fs == FileSystem::Private,
    };
    cfg.validate()?;
    let env = args.instances.env()?;
    if cfg.private_fs {
        let mount_point = stress::private_fs_mount_point(&env);
        eprintln!(
            "note: the instances run on a private ext4 file system in memory, a new one each run, mounted at {}",
            mount_point.display()
        );
    }
    for &p in &cfg.platforms {
        p.ensure_usable(&env)?;
    }
    std::fs::create_dir_all(&args.output).with_context(|| format!("creating {}", args.output.display()))?;

    let stop = crate::stop_on_signals()?;
    let total = cfg.run_length() * cfg.runs * cfg.platforms.len() as u32;
    let bar = crate::progress::Steps::new(total.as_secs(), "{bar:30} {pos}/{len} s  {msg}");
    let run_length = cfg.run_length();
    let show = |p: &stress::StressProgress| {
        let done = cfg.platforms.iter().position(|&k| k == p.platform).unwrap_or(0) as u32 * cfg.runs + (p.run - 1);
        bar.set_position((run_length * done + p.elapsed_in_run).as_secs());
        let last = p.last.map_or(String::new(), |s| format!(", {:.0} ops/s", s.ops_per_sec));
        let beside = match p.control {
            true => "the control".to_owned(),
            false => format!("{} trasher(s)", p.trashers),
        };
        let window = p.window.map_or("warm-up".into(), |(i, n)| format!("window {}/{n}, {beside}", i + 1));
        let headline = format!("{} run {}/{}: {window}", p.platform, p.run, cfg.runs);
        bar.set_status(&headline, &format!("{last} (Ctrl-C stops and writes what was measured)"));
    };
    let (result, trace) = match args.record {
        true => stress::run_recorded(&cfg, &env, &stop, show).map(|(result, trace)| (result, Some(trace)))?,
        false => (stress::run(&cfg, &env, &stop, &mut Unobserved, show)?, None),
    };
    bar.finish_and_clear();

    if let Some(warning) = stress::write_outputs(&result, &args.output)? {
        eprintln!("warning: {warning}");
    }
    if let Some(trace) = trace {
        let path = args.output.join(stress::TRACE_FILE);
        lockscope_trace::write_trace(&path, &trace, true)?;
        eprintln!("recorded the worker and trashers: {} (lockscope report {})", path.display(), path.display());
        if let Some(exposure) = stress::worker_exposure(&result, &trace) {
            println!(
                "the worker lost {:.4}% of its run time waiting on locks its trashers held (median over runs): isolation score {:.2}",
                100.0 * exposure,
                lockscope_analysis::score::isolation_score(exposure)
            );
        }
    }

    if !result.complete {
        eprintln!("interrupted: the outputs hold what was measured until then");
    }
    for note in &result.notes {
        eprintln!("note: {note}");
    }
    for s in &result.series {
        println!("{}: baseline {:.0} {}/s (median of the baseline windows)", s.platform, s.baseline, s.unit);
        for l in &s.levels {
            let d = &l.slowdown;
            let caveat = match (d.runs, d.coverage < CONFIDENCE) {
                (1, true) => format!(" (a {:.0}% interval within one run: raise --runs)", 100.0 * d.coverage),
                (1, false) => " (within one run: the next run may land outside; raise --runs)".to_owned(),
                _ => String::new(),
            };
            println!("  {} trasher(s): {} {}{caveat}", l.trashers, d.describe(), d.basis());
        }
        if let (Some(c), Some(command)) = (&s.control, &result.control) {
            println!("  the control ({command}): {} {}", c.slowdown.describe(), c.slowdown.basis());
            if let Some(beyond) = &c.beyond {
                println!("  1 trasher beyond the control, cycle by cycle: {} {}", beyond.describe(), beyond.basis());
            }
        }
    }
    eprintln!("wrote {} (stress.csv, stress.json, stress.svg, stress.png)", args.output.display());
    Ok(())
}
