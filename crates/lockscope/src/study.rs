//! `lockscope study`: the paper's experiment end to end — the built-in
//! microbenchmarks, two identical instances at a time, on every usable
//! platform; recorded, resolved where the source matches, compared, stressed,
//! and written up as a report.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use lockscope_analysis::compare::{self, spearman, Comparison};
use lockscope_analysis::html::{self, Correlation, StressFigure};
use lockscope_bpf::{Placement, RecordConfig, WorkloadSpec};
use lockscope_trace::{read_trace, write_trace, EndReason, Selector, Trace};
use lockscope_workloads::platform::{Env, Instance, InstanceSpec, Output, PlatformKind};
use lockscope_workloads::stress::{self, StressConfig, StressResult};
use serde::Serialize;

use crate::record::ModeArg;
use crate::source::TreeArgs;

/// The paper's microbenchmarks (6.1), scaled to a small machine, each with
/// the trasher that stresses what it uses.
const WORKLOADS: [(&str, &str, &str); 5] = [
    ("mem-8k", "mem --size 8k --total 128m", "trasher --target mm"),
    ("mem-1m", "mem --size 1m --total 128m", "trasher --target mm"),
    ("file-list", "file-list --files 5000", "trasher --target fs"),
    ("file-create", "file-create --files 2000", "trasher --target fs"),
    ("file-delete", "file-delete --files 2000", "trasher --target fs"),
];

/// Run the paper's study: for each built-in microbenchmark (mem-8k, mem-1m,
/// file-list, file-create, file-delete) on every usable platform (host,
/// runc, gvisor, microvm), record two identical instances side by side in
/// the best mode this kernel allows, resolve the traces against the kernel
/// source when it matches the traced kernel, compare (Table 5, shared locks,
/// subsystems, isolation scores), run the stress experiment per workload and
/// platform, and check how well the isolation score ranks the slowdowns.
///
/// Writes to --output: report.html (self-contained), report.json, table5.csv,
/// shared_locks.csv, subsystems.csv, the same tables as Parquet, the traces
/// (traces/WORKLOAD@PLATFORM.runN.trace) and the stress results
/// (stress/WORKLOAD@PLATFORM/).
///
/// A study interrupted (Ctrl-C) keeps every finished step; the same command
/// resumes it. The defaults take about 10-15 minutes on 2 cores; the paper's
/// scale is --runs 3 --duration 10m --stress-interval 10m --stress-trashers 7.
#[derive(clap::Args)]
pub struct Args {
    /// Directory for the report, tables, traces and stress results (resumed if it holds this study).
    #[arg(short, long, default_value = "lockscope-study")]
    output: PathBuf,
    /// Platforms to study [default: every usable one, see `lockscope doctor`].
    #[arg(long, value_delimiter = ',')]
    platforms: Vec<String>,
    /// Workloads to study.
    #[arg(long, value_delimiter = ',', default_value = "mem-8k,mem-1m,file-list,file-create,file-delete")]
    workloads: Vec<String>,
    /// How long each pair of instances runs while recorded.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "8s")]
    duration: Duration,
    /// Recordings per workload and platform (paper: 3).
    #[arg(long, default_value_t = 1)]
    runs: u32,
    #[arg(long, value_enum, default_value = "auto")]
    mode: ModeArg,
    /// Skip the stress experiment (and so the check of the isolation score).
    #[arg(long)]
    no_stress: bool,
    /// Time between trashers in the stress experiment.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    stress_interval: Duration,
    /// Trashers added in the stress experiment.
    #[arg(long, default_value_t = 2)]
    stress_trashers: u32,
    /// The kernel source to resolve against [default: ~/.cache/lockscope/linux-source-6.1, if prepared].
    #[arg(long, value_name = "DIR")]
    kernel_src: Option<PathBuf>,
    /// Where instances keep their working directories (a disk file system).
    #[arg(long, default_value_os_t = Env::default_work_root())]
    work_dir: PathBuf,
    /// gVisor's platform (ptrace works everywhere; kvm needs hardware virtualization).
    #[arg(long, default_value = "ptrace")]
    runsc_platform: String,
    /// Memory limit of each instance (e.g. 2g): a cgroup limit on host, runc
    /// and gvisor, the guest's memory on microvm. The paper's runc containers
    /// had one, which kept them off the page allocator's shared paths.
    #[arg(long, value_parser = lockscope_workloads::mem::parse_size)]
    memory_limit: Option<u64>,
    /// Start over: discard the traces and stress results of an earlier study in --output.
    #[arg(long)]
    fresh: bool,
}

/// What makes two studies the same study (so one can resume the other).
#[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
struct Plan {
    workloads: Vec<String>,
    platforms: Vec<String>,
    duration_secs: f64,
    runs: u32,
    stress: Option<(f64, u32)>,
    memory_limit: Option<u64>,
}

#[derive(Serialize)]
struct Report<'a> {
    notes: &'a [String],
    plan: &'a Plan,
    comparison: &'a Comparison,
    stress: &'a [StressFigure],
    correlations: &'a [Correlation],
    complete: bool,
}

fn workload_def(name: &str) -> Result<(&'static str, &'static str)> {
    WORKLOADS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, w, t)| (w, t))
        .with_context(|| format!("unknown workload {name:?}; the study's workloads are {}", WORKLOADS.map(|w| w.0).join(", ")))
}

pub fn run(args: Args) -> Result<()> {
    for w in &args.workloads {
        workload_def(w)?;
    }
    let env = Env { runsc_platform: args.runsc_platform.clone(), ..Env::new(&args.work_dir)? };
    let mut notes = Vec::new();
    let platforms = choose_platforms(&args.platforms, &env, &mut notes)?;
    let plan = Plan {
        workloads: args.workloads.clone(),
        platforms: platforms.iter().map(|p| p.name().to_owned()).collect(),
        duration_secs: args.duration.as_secs_f64(),
        runs: args.runs,
        stress: (!args.no_stress).then_some((args.stress_interval.as_secs_f64(), args.stress_trashers)),
        memory_limit: args.memory_limit,
    };
    start_or_resume(&args.output, &plan, args.fresh)?;

    let stop = crate::stop_on_signals()?;
    let steps = (plan.workloads.len() * platforms.len()) as u64 * (args.runs as u64 + u64::from(!args.no_stress));
    let bar = crate::progress::Steps::new(steps, "{bar:30} {pos}/{len} steps  {msg}");

    let mut traces = Vec::new();
    'record: for w in &plan.workloads {
        for &p in &platforms {
            for run in 1..=args.runs {
                if stop.load(Ordering::Relaxed) {
                    break 'record;
                }
                let path = args.output.join("traces").join(format!("{w}@{p}.run{run}.trace"));
                bar.set_message(format!("recording {w} on {p}, run {run}"));
                if let Some(trace) = record_step(&args, &env, w, p, &path, &stop)? {
                    notes.extend(failed_instances(&trace.meta.workloads, w, p));
                    traces.push((path, trace));
                }
                bar.inc(1);
            }
        }
    }

    bar.set_message("resolving call sites against the kernel source");
    resolve_traces(&args, &mut traces, &mut notes)?;
    let traces: Vec<Trace> = traces.into_iter().map(|(_, t)| t).collect();

    let mut stress_results = Vec::new();
    if !args.no_stress {
        'stress: for w in &plan.workloads {
            for &p in &platforms {
                if stop.load(Ordering::Relaxed) {
                    break 'stress;
                }
                bar.set_message(format!("stress: {w} on {p}, a trasher every {}", humantime::format_duration(args.stress_interval)));
                if let Some(result) = stress_step(&args, &env, w, p, &stop)? {
                    stress_results.push((w.clone(), p, result));
                }
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();

    let complete = !stop.load(Ordering::Relaxed);
    if !complete {
        notes.push("interrupted: the report covers the steps that finished; run the same command to resume".into());
    }
    write_report(&args.output, &plan, &notes, &traces, &stress_results, complete)
}

/// The platforms asked for (which must be usable), or every usable one.
fn choose_platforms(asked: &[String], env: &Env, notes: &mut Vec<String>) -> Result<Vec<PlatformKind>> {
    if !asked.is_empty() {
        let kinds = asked.iter().map(|p| PlatformKind::parse(p)).collect::<Result<Vec<_>, _>>()?;
        for &k in &kinds {
            k.ensure_usable(env)?;
        }
        return Ok(kinds);
    }
    let mut usable = Vec::new();
    for k in PlatformKind::ALL {
        let a = k.availability(env);
        if a.usable {
            usable.push(k);
        } else {
            notes.push(format!("platform {k} skipped: {}", a.detail));
        }
    }
    Ok(usable)
}

/// Refuses to mix two different studies in one directory.
fn start_or_resume(out: &Path, plan: &Plan, fresh: bool) -> Result<()> {
    let manifest = out.join("study.json");
    if fresh {
        for dir in ["traces", "stress"] {
            let _ = std::fs::remove_dir_all(out.join(dir));
        }
    } else if let Ok(text) = std::fs::read_to_string(&manifest) {
        let earlier: Plan = serde_json::from_str(&text).with_context(|| format!("reading {}", manifest.display()))?;
        if &earlier != plan {
            bail!(
                "{} holds a different study ({}); choose another --output, or pass --fresh to start over",
                out.display(),
                serde_json::to_string(&earlier)?
            );
        }
        eprintln!("resuming the study in {}: finished steps are kept", out.display());
    }
    std::fs::create_dir_all(out.join("traces")).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(&manifest, serde_json::to_string_pretty(plan)?).with_context(|| format!("writing {}", manifest.display()))?;
    Ok(())
}

/// Records one run (or reads it back from an earlier study); None when interrupted.
fn record_step(args: &Args, env: &Env, workload: &str, platform: PlatformKind, path: &Path, stop: &Arc<AtomicBool>) -> Result<Option<Trace>> {
    if let Ok(trace) = read_trace(path) {
        return Ok(Some(trace));
    }
    let (command, _) = workload_def(workload)?;
    let command = format!("{command} --duration {}ms", args.duration.as_millis());
    // As the paper: each instance pinned to a core of its own.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let spec = |name: &str, cpu: usize| WorkloadSpec {
        name: name.to_owned(),
        selector: Selector::Platform { platform: platform.name().into(), workload: command.clone() },
        placement: Placement { cpus: Some(vec![cpu % cpus]), memory_limit: args.memory_limit, output: Output::Discard },
    };
    let config = RecordConfig {
        mode: args.mode.request(),
        // The instances end the recording; this only bounds a stuck one.
        duration: Some(args.duration * 3 + Duration::from_secs(120)),
        ..RecordConfig::new(vec![spec("a", 0), spec("b", 1)], Arc::clone(stop), env.clone())
    };
    let mut trace = lockscope_bpf::record(&config, |_| {}).with_context(|| format!("recording {workload} on {platform}"))?;
    if trace.meta.end_reason == EndReason::Interrupted {
        return Ok(None); // redone on resume
    }
    trace.meta.label = Some(workload.to_owned());
    write_trace(path, &trace, true)?;
    Ok(Some(trace))
}

/// A note for each instance that did not end well: its locks cover only the
/// time it ran, which skews the comparison.
fn failed_instances(instances: &[lockscope_trace::Workload], workload: &str, platform: PlatformKind) -> Vec<String> {
    instances
        .iter()
        .filter_map(|i| Some((i, i.exit.as_deref()?)))
        .filter(|(_, exit)| *exit != "exit status 0")
        .map(|(i, exit)| format!("{workload} on {platform}: instance {} ended after {:.1} s: {exit}", i.name, i.run_time_secs()))
        .collect()
}

/// Resolves the traces where the kernel source matches the traced kernel;
/// else places their call sites in subsystems by function name, from
/// whatever kernel source is at hand. Traces are rewritten with what was found.
fn resolve_traces(args: &Args, traces: &mut [(PathBuf, Trace)], notes: &mut Vec<String>) -> Result<()> {
    let tree = TreeArgs::new(args.kernel_src.clone());
    let root = tree.root();
    let Some((_, first)) = traces.first() else { return Ok(()) };
    let why_not = if !root.join(lockscope_source::tree::COMPILE_COMMANDS).is_file() {
        Some(format!("no prepared kernel source at {} (lockscope source prepare)", root.display()))
    } else {
        crate::resolve::version_mismatch(first, &root)
    };
    let Some(why_not) = why_not else {
        for (path, trace) in traces.iter_mut().filter(|(_, t)| t.sites.is_empty()) {
            crate::resolve::resolve_in_place(trace, &tree, &Default::default()).context("resolving the traces")?;
            write_trace(path, trace, true)?;
        }
        notes.push(format!("locks resolved against the kernel source at {}", root.display()));
        return Ok(());
    };
    notes.push(format!("locks not resolved to kernel objects: {why_not}"));
    if args.kernel_src.is_none() && !lockscope_source::tree::is_kernel_tree(&root) {
        // Debian's source package is installed by setup; extracting it takes seconds.
        if lockscope_source::tree::extract_debian_source(&root).is_err() {
            notes.push("subsystems unknown: no kernel source (apt-get install linux-source-6.1)".into());
            return Ok(());
        }
    }
    let index = lockscope_source::functions::FunctionIndex::load(&root).with_context(|| format!("indexing functions in {}", root.display()))?;
    for (path, trace) in traces.iter_mut().filter(|(_, t)| t.sites.is_empty()) {
        trace.sites = lockscope_source::stacks::place_by_function_name(trace, &index);
        trace.meta.notes.push(format!("call sites placed in subsystems by function name, from the source at {}", root.display()));
        write_trace(path, trace, true)?;
    }
    notes.push(format!("subsystems from the call sites' function names in the source at {} ({} functions)", root.display(), index.len()));
    Ok(())
}

/// Where one workload's stress experiment on one platform is written.
fn stress_dir(out: &Path, workload: &str, platform: PlatformKind) -> PathBuf {
    out.join("stress").join(format!("{workload}@{platform}"))
}

/// Runs one stress experiment (or reads it back); None when interrupted.
fn stress_step(args: &Args, env: &Env, workload: &str, platform: PlatformKind, stop: &AtomicBool) -> Result<Option<StressResult>> {
    let dir = stress_dir(&args.output, workload, platform);
    if let Ok(text) = std::fs::read_to_string(dir.join("stress.json")) {
        if let Ok(result) = serde_json::from_str::<StressResult>(&text) {
            return Ok(Some(result));
        }
    }
    let (worker, trasher) = workload_def(workload)?;
    let cfg = StressConfig {
        platforms: vec![platform],
        worker: shlex::split(worker).unwrap_or_default(),
        trasher: shlex::split(trasher).unwrap_or_default(),
        trashers: args.stress_trashers,
        interval: args.stress_interval,
        sample_every: (args.stress_interval / 5).max(Duration::from_millis(200)),
        runs: 1,
    };
    let result = stress::run(&cfg, env, stop, &mut |_: &InstanceSpec, _: &dyn Instance| Ok(()), |_| {}).with_context(|| format!("stress: {workload} on {platform}"))?;
    if !result.complete {
        return Ok(None);
    }
    std::fs::create_dir_all(&dir)?;
    crate::stress::write_outputs(&result, &dir)?;
    Ok(Some(result))
}

fn write_report(
    out: &Path,
    plan: &Plan,
    notes: &[String],
    traces: &[Trace],
    stress_results: &[(String, PlatformKind, StressResult)],
    complete: bool,
) -> Result<()> {
    let options = lockscope_analysis::Options { top_sites: 3, include_interrupt: false };
    let comparison = compare::compare_traces(traces, &options);

    let mut notes = notes.to_vec();
    if let Some(t) = traces.first() {
        notes.insert(0, format!("kernel {} · mode {} via {} · {} recordings", t.meta.kernel_release, t.meta.mode, t.meta.hook, traces.len()));
    }
    let figures: Vec<StressFigure> = stress_results
        .iter()
        .filter_map(|(w, p, r)| {
            let s = r.series.first()?;
            let last = s.levels.last()?;
            let svg = std::fs::read_to_string(stress_dir(out, w, *p).join("stress.svg")).unwrap_or_default();
            Some(StressFigure { workload: w.clone(), platform: p.name().into(), baseline: s.baseline, unit: s.unit.clone(), slowdown: last.slowdown, trashers: last.trashers, svg })
        })
        .collect();
    let correlations = correlate(&comparison, &figures);

    let report = Report { notes: &notes, plan, comparison: &comparison, stress: &figures, correlations: &correlations, complete };
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    std::fs::write(out.join("table5.csv"), lockscope_analysis::render::comparison_csv(&comparison))?;
    std::fs::write(out.join("shared_locks.csv"), lockscope_analysis::render::shared_locks_csv(&comparison))?;
    std::fs::write(out.join("subsystems.csv"), lockscope_analysis::render::subsystems_csv(&comparison))?;
    for table in ["table5.parquet", "shared_locks.parquet", "subsystems.parquet"] {
        let _ = std::fs::remove_file(out.join(table));
    }
    lockscope_analysis::export::write_parquet(&comparison, out)?;
    let page = html::Page { title: "lockscope study: kernel locks shared by co-located workloads", notes: &notes, comparison: &comparison, stress: &figures, correlations: &correlations };
    std::fs::write(out.join("report.html"), html::render(&page))?;

    print!("{}", lockscope_analysis::render::comparison_table(&comparison));
    for k in &correlations {
        println!("{} vs slowdown: Spearman's rho {} over {} experiments", k.measure, k.rho.map_or("n/a".into(), |r| format!("{r:.2}")), k.experiments);
    }
    for n in &notes {
        eprintln!("note: {n}");
    }
    eprintln!("wrote {} (report.html, report.json, CSV and Parquet tables, traces, stress results)", out.display());
    Ok(())
}

/// A sharing measure of a comparison cell, by name.
type Measure = (&'static str, fn(&compare::Cell) -> f64);

/// Spearman's rho of each sharing measure against the measured slowdown.
fn correlate(c: &Comparison, figures: &[StressFigure]) -> Vec<Correlation> {
    if figures.is_empty() {
        return vec![];
    }
    let measures: [Measure; 3] = [
        ("exposure (100 - isolation score)", |c| c.exposure),
        ("cumulative shared-lock rate", |c| c.cumulative_rate),
        ("shared-lock count", |c| c.shared_mean),
    ];
    measures
        .iter()
        .map(|(name, measure)| {
            let pairs: Vec<(f64, f64)> = figures
                .iter()
                .filter_map(|f| c.cell(&f.workload, &f.platform).map(|cell| (measure(cell), f.slowdown)))
                .collect();
            Correlation { measure: (*name).into(), rho: spearman(&pairs), experiments: pairs.len() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_that_failed_or_were_killed_are_noted() {
        let instance = |name: &str, exit: Option<&str>| lockscope_trace::Workload {
            id: 1,
            name: name.into(),
            selector: Selector::Platform { platform: "runc".into(), workload: "mem".into() },
            pids: vec![],
            run_time_ns: 1_500_000_000,
            exit: exit.map(String::from),
            irq_filtered: 0,
        };
        let instances = [
            instance("a", Some("exit status 0")),
            instance("b", Some("exit status 1: --size must be at least 1 byte")),
            instance("c", None), // still running at the end: stopped by the recorder
        ];
        assert_eq!(
            failed_instances(&instances, "mem-1m", PlatformKind::Runc),
            ["mem-1m on runc: instance b ended after 1.5 s: exit status 1: --size must be at least 1 byte"]
        );
    }
}
