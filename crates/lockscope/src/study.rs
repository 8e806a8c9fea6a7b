//! `lockscope study`: the paper's experiment end to end (see
//! lockscope_experiments::study); this turns its flags into a configuration
//! and shows its progress and findings.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use lockscope_experiments::study::{self, StressSettings, StudyConfig, StudyEvent};
use lockscope_platform::PlatformKind;

use crate::record::ModeArg;

/// Run the paper's study: for each built-in microbenchmark (mem-8k, mem-1m,
/// file-list, file-create, file-delete) on every usable platform (host,
/// runc, gvisor, microvm), record two identical instances side by side in
/// the best mode this kernel allows, resolve the traces against the kernel
/// source when it matches the traced kernel, compare (Table 5, shared locks,
/// subsystems, isolation scores), run the stress experiment per workload and
/// platform (but those under software emulation: --stress-emulated), and
/// check how well the isolation score ranks the slowdowns.
///
/// Writes to --output: report.html (self-contained), report.json, table5.csv,
/// shared_locks.csv, subsystems.csv, the same tables as Parquet, the traces
/// (traces/WORKLOAD@PLATFORM.runN.trace) and the stress results
/// (stress/WORKLOAD@PLATFORM/).
///
/// A study interrupted (Ctrl-C) keeps every finished step; the same command
/// resumes it. The defaults take about 20 minutes on 2 cores (with host@6.1
/// on a kernel without acquire mode); the paper's scale is --runs 3
/// --duration 10m --stress-window 1m --stress-trashers 7.
#[derive(clap::Args)]
pub struct Args {
    /// Directory for the report, tables, traces and stress results (resumed if it holds this study).
    #[arg(short, long, default_value = "lockscope-study")]
    output: PathBuf,
    /// Platforms to study [default: every usable one, see `lockscope doctor`].
    #[arg(long, value_delimiter = ',')]
    platforms: Vec<String>,
    /// Kernels to study in: running (this machine's, in the best mode it
    /// allows), debian-6.1 (Debian 12's kernel, the paper's) and debian-6.12
    /// (its newer one). A Debian kernel is booted under qemu: the host
    /// platform's microbenchmarks inside it, in acquire mode, every
    /// acquisition counted (stacks sampled one in 64, counts per lock
    /// exact); its columns are host@6.1, host@6.12. Each guest
    /// kernel (~60-110 MB) and its debug info (~0.9-1 GB) are fetched once,
    /// and its source (`linux-source-6.12`) extracted and configured once;
    /// clangd's index of it, for locks reached through other files, comes
    /// from `lockscope source prepare --kernel debian-6.12`. [default:
    /// running, and debian-6.1 too where this kernel allows contention mode
    /// only, so that the study counts every acquisition as the paper did]
    #[arg(long = "kernel", value_delimiter = ',')]
    kernels: Vec<String>,
    /// Workloads to study: names (mem-8k, mem-1m, file-list, file-create,
    /// file-delete; image-processing, video-processing, face-detection,
    /// lr-training, cnn, rnn; data-caching, data-caching-cold, video-transcode,
    /// graph-analytics) or groups: micro (the paper's microbenchmarks),
    /// serverless (its Table 6 functions), cloud (its Table 7 workloads), all.
    #[arg(long, value_delimiter = ',', default_value = "micro")]
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
    /// The length of each baseline and stressed window of the stress experiment (`lockscope stress --help`).
    /// Short windows, many of them: a worker's throughput moves in steps lasting seconds whatever
    /// runs beside it, which baselines half a second either side of a stressed window share.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "500ms")]
    stress_window: Duration,
    /// Stressed windows per trasher count and run.
    #[arg(long, default_value_t = 6)]
    stress_cycles: u32,
    /// Runs of each stress experiment, each starting its instances afresh:
    /// their spread is the slowdown's interval (`lockscope stress --help`).
    #[arg(long, default_value_t = 3)]
    stress_runs: u32,
    /// Trasher counts measured in the stress experiment: 1 up to this.
    #[arg(long, default_value_t = 1)]
    stress_trashers: u32,
    /// Also stress the columns that run under qemu's software emulation here
    /// (microvm and the guest kernels' columns, where the machine has no
    /// hardware virtualization), left out by default: there the emulator
    /// more than the kernel's locks sets a slowdown, and each cell takes
    /// 30-60 s.
    #[arg(long)]
    stress_emulated: bool,
    /// Also run a lock-free control (`trasher --target memory`: a core busy
    /// with memory traffic) in windows of its own beside the first trasher's,
    /// and rank the score against each cell's slowdown beyond it too: a
    /// slowdown the control matches is not the trasher's locks'.
    #[arg(long)]
    stress_control: bool,
    /// The kernel source to resolve every trace against [default: Debian's
    /// source of the trace's kernel in ~/.cache/lockscope (prepared for the
    /// Debian kernels studied), else linux-source-6.1 for subsystems].
    #[arg(long, value_name = "DIR")]
    kernel_src: Option<PathBuf>,
    #[command(flatten)]
    instances: crate::platform_args::PlatformArgs,
    /// Memory limit of each instance (e.g. 2g): a cgroup limit on host, runc
    /// and gvisor, the guest's memory on microvm. The paper's runc containers
    /// had one, which kept them off the page allocator's shared paths.
    #[arg(long, value_parser = lockscope_workloads::mem::parse_size)]
    memory_limit: Option<u64>,
    /// How long each recording in a guest kernel may take, boot included
    /// [default: 3 × --duration + 15 min: emulation is slow]; a guest still
    /// running then is killed, its step noted as failed with the console's
    /// last lines, and retried when the study is run again.
    #[arg(long, value_parser = humantime::parse_duration)]
    guest_timeout: Option<Duration>,
    /// Start over: discard the traces and stress results of an earlier study in --output.
    #[arg(long)]
    fresh: bool,
}

pub fn run(args: Args) -> Result<()> {
    let platforms = args.platforms.iter().map(|p| PlatformKind::parse(p)).collect::<Result<Vec<_>, _>>()?;
    let cfg = StudyConfig {
        output: args.output.clone(),
        platforms,
        kernels: args.kernels.iter().map(|k| study::StudyKernel::parse(k)).collect::<Result<Vec<_>, _>>()?,
        workloads: lockscope_experiments::study::expand_workloads(&args.workloads)?,
        duration: args.duration,
        runs: args.runs,
        mode: args.mode.request(),
        stress: (!args.no_stress).then_some(StressSettings {
            window: args.stress_window,
            cycles: args.stress_cycles,
            trashers: args.stress_trashers,
            runs: args.stress_runs,
            emulated: args.stress_emulated,
            control: args.stress_control,
        }),
        kernel_src: args.kernel_src.clone(),
        memory_limit: args.memory_limit,
        guest_timeout: args.guest_timeout,
        fresh: args.fresh,
        env: args.instances.env()?,
    };
    let stop = crate::stop_on_signals()?;
    let mut bar = None;
    let outcome = study::run(&cfg, &stop, |event| match event {
        StudyEvent::Resuming(dir) => eprintln!("resuming the study in {}: finished steps are kept", dir.display()),
        StudyEvent::Step { done, total, doing } => {
            let bar = bar.get_or_insert_with(|| crate::progress::Steps::new(total, "{bar:30} {pos}/{len} steps  {msg}"));
            bar.set_position(done);
            bar.set_message(doing);
        }
        StudyEvent::Warning(warning) => eprintln!("warning: {warning}"),
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let outcome = outcome?;

    print!("{}", lockscope_analysis::render::comparison_table(&outcome.comparison));
    for k in &outcome.correlations {
        let ci = k.rho_ci.map_or(String::new(), |(lo, hi)| format!(" [95%: {lo:.2}, {hi:.2}]"));
        println!(
            "{} vs {} ({} kernel): Spearman's rho {}{ci} over {} experiments, {} with a supported slowdown",
            k.measure,
            k.against,
            k.kernel,
            k.rho_text(),
            k.experiments,
            k.with_slowdown
        );
    }
    if !outcome.correlations.is_empty() {
        println!("({})", lockscope_analysis::html::CALIBRATION_HINT);
    }
    for n in &outcome.notes {
        eprintln!("note: {n}");
    }
    eprintln!("wrote {} (report.html, report.json, CSV and Parquet tables, traces, stress results)", args.output.display());
    Ok(())
}
