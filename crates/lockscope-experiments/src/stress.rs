//! The interference experiment (paper 5.3 and 7): a worker's throughput with
//! and without trashers beside it, each on a core of its own where cores
//! allow. After a warm-up, baseline windows (trashers paused) and stressed
//! windows (1, then 2, ... trashers running) alternate, so every stressed
//! window is compared with the baselines either side of it and the worker's
//! own drift over the run cancels. Each trasher count's slowdown is the
//! median over its windows (of every run), with a confidence interval over
//! the runs (the runs, not the windows, are independent); one whose
//! interval holds zero is no slowdown. A control (a workload with a
//! trasher's CPU and memory traffic but no kernel lock) may run in windows
//! of its own beside the first trasher's: what the trasher costs beyond it
//! is what its locks, not its mere presence, can explain.

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use lockscope_analysis::score::Exposure;
use lockscope_analysis::stats::{median, Slowdown};
use lockscope_bpf::{Lifetimes, RecordError, RecordOptions, Session, WorkloadId};
use lockscope_platform::{Env, Instance, InstanceSpec, Output, PlatformError, PlatformKind};
use lockscope_trace::{EndReason, Selector, Trace};
use lockscope_workloads::meter::Line;

use crate::scratch_fs::{unjournaled_ext4, ScratchFs, PRIVATE_FS_MIB};

#[derive(Debug, thiserror::Error)]
pub enum StressError {
    /// Settings the experiment cannot honour.
    #[error("{0}")]
    Settings(String),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("the worker's output was not captured")]
    NoOutput,
    #[error("the worker ended early ({exit}) on {platform}, run {run}")]
    WorkerEnded { exit: String, platform: PlatformKind, run: u32 },
    #[error("the worker reported no whole operation in {secs} s on {platform}, run {run}: give it less to do per operation")]
    WorkerTooSlow { secs: u64, platform: PlatformKind, run: u32 },
    #[error("writing {path}: {source}")]
    Write { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Figure(#[from] crate::figure::FigureError),
    /// The private file system the instances were to run on.
    #[error(transparent)]
    PrivateFs(#[from] crate::scratch_fs::ScratchFsError),
}

#[derive(Clone, Debug)]
pub struct StressConfig {
    pub platforms: Vec<PlatformKind>,
    /// Arguments of `lockscope workload` for the worker (e.g. `file-create --files 2000`).
    pub worker: Vec<String>,
    /// Arguments of `lockscope workload` for each trasher (e.g. `trasher --target fs`).
    pub trasher: Vec<String>,
    /// Arguments of `lockscope workload` for the control (e.g. `trasher
    /// --target memory`), run on the first trasher's CPU in windows of its
    /// own, each cycle beside one of the first trasher count's; None: no control.
    pub control: Option<Vec<String>>,
    /// The trasher counts measured: 1 up to this (paper: 7).
    pub trashers: u32,
    /// The length of each baseline and each stressed window.
    pub window: Duration,
    /// Stressed windows per trasher count and run, each between two baselines.
    pub cycles: u32,
    /// The worker's time alone before the first window, left out of every
    /// figure (caches warming, its directory filling).
    pub warmup: Duration,
    /// How often the worker reports its throughput.
    pub sample_every: Duration,
    /// Repetitions per platform, each a fresh start of every instance: their
    /// spread is in the interval only from 2 runs on.
    pub runs: u32,
    /// Each run on an ext4 file system of its own, made in memory under the
    /// work directory and removed after the run ([`ScratchFs`]): no other
    /// writer shares its journal, and runs on one file system agree more
    /// closely than the file systems do (so each run gets a new one).
    pub private_fs: bool,
}

impl StressConfig {
    pub fn validate(&self) -> Result<(), StressError> {
        let bad = |m: String| Err(StressError::Settings(m));
        if self.platforms.is_empty() {
            return bad("no platform given".into());
        }
        if self.worker.is_empty() || self.trasher.is_empty() {
            return bad("the worker and the trasher must each name a workload".into());
        }
        if self.runs == 0 || self.cycles == 0 || self.trashers == 0 {
            return bad("--runs, --cycles and --trashers must each be at least 1".into());
        }
        if self.sample_every.is_zero() || self.window < self.sample_every * 2 {
            return bad(format!("--window ({:?}) must hold at least two samples of --sample ({:?})", self.window, self.sample_every));
        }
        if self.control.as_ref().is_some_and(Vec::is_empty) {
            return bad("the control must name a workload".into());
        }
        for args in [&self.worker, &self.trasher].into_iter().chain(&self.control) {
            if let Some(a) = args.iter().find(|a| ["--duration", "--rounds", "--report-every"].contains(&a.as_str())) {
                return bad(format!("{a} is set by stress itself; leave it out of the workload's arguments"));
            }
        }
        Ok(())
    }

    /// The windows of one run from `from` (the warm-up's end), each `window`
    /// long: a baseline, then per trasher count `cycles` times stressed +
    /// baseline (with the control, each cycle of one trasher also control +
    /// baseline).
    pub fn windows(&self, window: Duration, from: Duration) -> Vec<Window> {
        let (baseline, control) = ((0, false), (0, true));
        let mut states = vec![baseline];
        for k in 1..=self.trashers {
            for _ in 0..self.cycles {
                states.extend([(k, false), baseline]);
                if k == 1 && self.control.is_some() {
                    states.extend([control, baseline]);
                }
            }
        }
        let at = |i: usize| (from + window * i as u32).as_secs_f64();
        states.into_iter().enumerate().map(|(i, (trashers, control))| Window { start: at(i), end: at(i + 1), trashers, control }).collect()
    }

    /// The planned length of one run (slow workloads may lengthen it).
    pub fn run_length(&self) -> Duration {
        self.warmup + self.window * self.windows(self.window, Duration::ZERO).len() as u32
    }
}

/// One window of a run: seconds since the worker started.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Once the trashers were in the window's state: a runtime's pause or
    /// resume takes a while (runsc's about 0.1 s), and its own work is no trasher's.
    pub start: f64,
    pub end: f64,
    /// Trashers running through it; 0: a baseline, or a control window.
    pub trashers: u32,
    /// The control ran through it ([`StressConfig::control`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub control: bool,
}

impl Window {
    fn is_baseline(&self) -> bool {
        self.trashers == 0 && !self.control
    }
}

/// One throughput report of the worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub platform: PlatformKind,
    pub run: u32,
    /// Seconds since the worker started, at the end of the sample.
    pub t: f64,
    /// The window it lies in, whole (index into the run's windows); None
    /// in the warm-up, across a window's edge, or after the last window.
    pub window: Option<usize>,
    /// Trashers running throughout the sample (0 where it is in no window).
    pub trashers: u32,
    /// The control ran throughout the sample.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub control: bool,
    pub ops_per_sec: f64,
}

/// The pooled result of one platform.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Series {
    pub platform: PlatformKind,
    /// What one of the worker's operations is.
    pub unit: String,
    /// The median throughput of the baseline windows.
    pub baseline: f64,
    /// Mean throughput over runs, per sample slot (the figure's line).
    pub points: Vec<Point>,
    /// The slowdown at each trasher count.
    pub levels: Vec<Level>,
    /// The slowdown beside the control, where one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlLevel>,
    /// Run 1's windows (after any lengthening).
    pub windows: Vec<Window>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Point {
    pub t: f64,
    pub trashers: u32,
    pub ops_per_sec: f64,
}

/// The slowdown with `trashers` running: one estimate per stressed window,
/// 1 − its throughput / the mean of the baselines either side of it (so a
/// workload's own drift over the run cancels), pooled over cycles, and over
/// runs as [`Slowdown::of_runs`] says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Level {
    pub trashers: u32,
    /// The median throughput of its stressed windows.
    pub ops_per_sec: f64,
    #[serde(flatten)]
    pub slowdown: Slowdown,
}

/// The worker beside the control, in windows between baselines as a
/// trasher's, and one trasher's slowdown beyond it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ControlLevel {
    /// The median throughput of its windows.
    pub ops_per_sec: f64,
    #[serde(flatten)]
    pub slowdown: Slowdown,
    /// One trasher's slowdown less the control's, cycle by cycle (each pair
    /// a few windows apart): what the trasher costs beyond the control's
    /// CPU and memory traffic. None where no cycle measured both.
    pub beyond: Option<Slowdown>,
}

/// Why a run measures no slowdown: a stressed window counts only between
/// two baselines, each holding a whole report of the worker.
pub const NOT_MEASURED: &str = "no stressed window between two measured baselines";

impl Series {
    /// Says which trasher counts were measured in fewer of the `runs` than
    /// ran: in the others the worker's reports straddled the windows' edges
    /// (a worker that stalls now and then, as gVisor's may).
    pub fn lost_runs(&self, runs: u32) -> Vec<String> {
        let lost = |l: &&Level| (l.slowdown.runs as u32) < runs;
        let say = |l: &Level| {
            format!(
                "{}, {} trasher(s): measured in {} of {runs} runs; in the others {NOT_MEASURED}: the worker's reports straddled the windows' edges (longer windows would hold them)",
                self.platform, l.trashers, l.slowdown.runs
            )
        };
        self.levels.iter().filter(lost).map(say).collect()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StressResult {
    pub worker: String,
    pub trasher: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    pub window_secs: f64,
    pub cycles: u32,
    pub warmup_secs: f64,
    pub sample_secs: f64,
    pub runs: u32,
    /// False when interrupted: the series hold what was measured.
    pub complete: bool,
    /// What limited the experiment on this machine (cores, slow operations).
    pub notes: Vec<String>,
    pub series: Vec<Series>,
    pub samples: Vec<Sample>,
}

/// What a recorded experiment's trace is called beside its results.
pub const TRACE_FILE: &str = "stress.trace";

/// The worker of a platform's run, as the recording names it.
fn worker_name(platform: PlatformKind, run: u32) -> String {
    format!("worker-{platform}-{run}")
}

/// Trasher `k` (from 1) of a platform's run, as the recording names it.
fn trasher_name(k: u32, platform: PlatformKind, run: u32) -> String {
    format!("trasher{k}-{platform}-{run}")
}

/// The control of a platform's run, as the recording names it.
fn control_name(platform: PlatformKind, run: u32) -> String {
    format!("control-{platform}-{run}")
}

/// The worker's exposure to all its trashers together, per run (platform by
/// platform, run by run), from the exposures the analysis of the
/// experiment's recording found: the score's measure of the interference
/// each run itself had. Runs whose worker was not recorded are left out.
pub fn worker_exposures(result: &StressResult, exposures: &[Exposure]) -> Vec<f64> {
    let trashers = result.series.iter().flat_map(|s| &s.levels).map(|l| l.trashers).max().unwrap_or(0);
    let runs = result.series.iter().flat_map(|s| (1..=result.runs).map(move |run| (s.platform, run)));
    runs.filter_map(|(platform, run)| {
        let worker = worker_name(platform, run);
        let its_trashers: Vec<String> = (1..=trashers).map(|k| trasher_name(k, platform, run)).collect();
        let mine: Vec<&Exposure> = exposures.iter().filter(|e| e.waiter == worker).collect();
        let to_trashers = mine.iter().filter(|e| its_trashers.contains(&e.holder)).map(|e| e.exposure).sum();
        (!mine.is_empty()).then_some(to_trashers)
    })
    .collect()
}

/// The worker's exposure to its trashers in a recorded experiment: the
/// median over its runs of [`worker_exposures`], from the recording.
pub fn worker_exposure(result: &StressResult, trace: &Trace) -> Option<f64> {
    let analysis = lockscope_analysis::analyze(trace, &lockscope_analysis::Options { top_sites: 1, include_interrupt: false });
    median(&worker_exposures(result, &analysis.exposures))
}

/// Where each run's private file system is mounted (`private_fs`).
pub fn private_fs_mount_point(env: &Env) -> std::path::PathBuf {
    env.work_root.join(format!("stress-{}", std::process::id()))
}

/// What the runner reports while it works.
pub struct StressProgress<'a> {
    pub platform: PlatformKind,
    pub run: u32,
    pub elapsed_in_run: Duration,
    /// The window under way and how many the run has; None in the warm-up.
    pub window: Option<(usize, usize)>,
    /// Trashers running now.
    pub trashers: u32,
    /// The control running now.
    pub control: bool,
    pub last: Option<&'a Sample>,
}

/// Sees each instance of the experiment (worker or trasher) through its
/// life: e.g. to record it.
pub trait Observer {
    /// Created and held, not yet running.
    fn created(&mut self, spec: &InstanceSpec, instance: &dyn Instance) -> Result<(), StressError>;
    /// Let run.
    fn started(&mut self, name: &str);
    /// Stopped at the end of its run; `exit`: how it ended, when known.
    fn stopped(&mut self, name: &str, exit: Option<String>);
}

/// Observes nothing.
pub struct Unobserved;

impl Observer for Unobserved {
    fn created(&mut self, _: &InstanceSpec, _: &dyn Instance) -> Result<(), StressError> {
        Ok(())
    }
    fn started(&mut self, _: &str) {}
    fn stopped(&mut self, _: &str, _: Option<String>) {}
}

/// Follows every instance in a recording session: each from its creation,
/// its run time from its start to its stop.
struct Recorded<'s, 'k> {
    session: &'s mut Session<'k>,
    ids: std::collections::HashMap<String, WorkloadId>,
}

impl Observer for Recorded<'_, '_> {
    fn created(&mut self, spec: &InstanceSpec, instance: &dyn Instance) -> Result<(), StressError> {
        let selector = Selector::Platform { platform: instance.platform().name().into(), workload: crate::record::join(&spec.workload) };
        let id = self.session.follow_processes(&spec.name, selector, &instance.pids())?;
        self.ids.insert(spec.name.clone(), id);
        Ok(())
    }

    fn started(&mut self, name: &str) {
        if let Some(&id) = self.ids.get(name) {
            self.session.restart_clock(id);
        }
    }

    fn stopped(&mut self, name: &str, exit: Option<String>) {
        if let Some(&id) = self.ids.get(name) {
            self.session.end(id, exit);
        }
    }
}

/// Runs the experiment while recording the worker and every trasher (best
/// mode available): the locks they share and the slowdown come from the same run.
pub fn run_recorded(
    cfg: &StressConfig,
    env: &Env,
    stop: &AtomicBool,
    progress: impl FnMut(&StressProgress),
) -> Result<(StressResult, Trace), StressError> {
    let mut result = None;
    // Contention mode's exposure is from waits and their holders, by lock
    // address, which lock lifetimes do not change; their program on every
    // slab free lengthens the critical sections that free, and made a
    // file-create pair's exposure half as large again (BENCHMARKS.md).
    // Acquire mode's expected waits are per lock life.
    let options = RecordOptions { lifetimes: Lifetimes::AcquireModeOnly, ..RecordOptions::default() };
    let mut trace = lockscope_bpf::record(&options, |session| {
        let mut observer = Recorded { session, ids: Default::default() };
        let measured = run(cfg, env, stop, &mut observer, progress)?;
        let reason = if measured.complete { EndReason::WorkloadsExited } else { EndReason::Interrupted };
        result = Some(measured);
        Ok::<_, StressError>(reason)
    })?;
    crate::record::name_locks(&mut trace);
    Ok((result.expect("a recording that succeeded ran the experiment"), trace))
}

/// Runs the experiment. `stop` ends it early (everything started is stopped
/// and removed); what was measured until then is returned.
pub fn run(
    cfg: &StressConfig,
    env: &Env,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
    mut progress: impl FnMut(&StressProgress),
) -> Result<StressResult, StressError> {
    cfg.validate()?;
    let mut samples = Vec::new();
    let mut firsts = Vec::new();
    let mut notes: Vec<String> = cpu_note(cfg.trashers).into_iter().collect();
    if !cfg.private_fs {
        notes.extend(unjournaled_note(&env.work_root));
    }
    let mut complete = true;
    'platforms: for &platform in &cfg.platforms {
        for run in 1..=cfg.runs {
            if stop.load(Ordering::Relaxed) {
                complete = false;
                break 'platforms;
            }
            // Dirty pages left by whatever ran before (a build, the last
            // run's files) are written back now, not inside the windows.
            // SAFETY: sync(2) takes no arguments and cannot fail.
            unsafe { libc::sync() };
            // Dropped (unmounted, removed) once the run's instances are gone.
            let private_fs = match cfg.private_fs {
                true => Some(ScratchFs::create("stress", &private_fs_mount_point(env), PRIVATE_FS_MIB)?),
                false => None,
            };
            let run_env = match &private_fs {
                Some(fs) => &Env { work_root: fs.path().to_owned(), ..env.clone() },
                None => env,
            };
            let outcome = run_once(cfg, run_env, platform, run, stop, observer, &mut progress)?;
            drop(private_fs);
            samples.extend(outcome.samples);
            notes.extend(outcome.note);
            if run == 1 {
                firsts.push((platform, outcome.unit, outcome.windows));
            }
            if outcome.interrupted {
                complete = false;
                break 'platforms;
            }
        }
    }
    let series: Vec<Series> =
        firsts.into_iter().map(|(platform, unit, windows)| summarize(platform, unit, windows, &samples, cfg)).collect();
    if complete {
        notes.extend(series.iter().flat_map(|s| s.lost_runs(cfg.runs)));
    }
    Ok(StressResult {
        worker: cfg.worker.join(" "),
        trasher: cfg.trasher.join(" "),
        control: cfg.control.as_ref().map(|c| c.join(" ")),
        window_secs: cfg.window.as_secs_f64(),
        cycles: cfg.cycles,
        warmup_secs: cfg.warmup.as_secs_f64(),
        sample_secs: cfg.sample_every.as_secs_f64(),
        runs: cfg.runs,
        complete,
        notes,
        series,
        samples,
    })
}

struct RunOutcome {
    samples: Vec<Sample>,
    unit: String,
    windows: Vec<Window>,
    /// Why this run's windows were lengthened, if they were.
    note: Option<String>,
    interrupted: bool,
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// CPUs: the worker on the first, trashers spread over the others (all on
/// one CPU where there is no other).
fn placement(trasher: Option<u32>) -> Option<Vec<usize>> {
    let cpus = cpus();
    if cpus < 2 {
        return None;
    }
    Some(vec![match trasher {
        None => 0,
        Some(k) => 1 + (k as usize - 1) % (cpus - 1),
    }])
}

/// Says where the machine has too few cores for a core per instance.
fn cpu_note(trashers: u32) -> Option<String> {
    let cpus = cpus();
    match cpus {
        1 => Some("1 CPU: the worker and every trasher share it, so the slowdown includes CPU time taken".into()),
        n if n <= trashers as usize => Some(format!(
            "{n} CPUs: the worker has CPU 0 to itself; the {trashers} trashers share the other {}, so with more trashers than \
             CPUs they also compete for CPU time with each other",
            n - 1
        )),
        _ => None,
    }
}

/// Why file workloads drift on the work directory's file system, when they do.
fn unjournaled_note(work_root: &std::path::Path) -> Option<String> {
    let device = unjournaled_ext4(work_root)?;
    Some(format!(
        "{} is on ext4 without a journal ({device}), which reuses no inode deleted in the last minute and walks past each \
         to allocate the next: file workloads there slow with their own deletions and with those of the runs before \
         (a private file system per run has a journal)",
        work_root.display()
    ))
}

/// Where a trasher is in its life.
#[derive(Clone, Copy, PartialEq)]
enum TrasherState {
    Held,
    Running,
    Paused,
}

/// What a paused-and-resumed instance is to the experiment.
#[derive(Clone, Copy)]
enum Role {
    /// Trasher k (from 1): runs in windows of k trashers or more.
    Trasher(u32),
    /// Runs in the control windows.
    Control,
}

impl Role {
    fn runs_in(self, window: &Window) -> bool {
        match self {
            Role::Trasher(k) => k <= window.trashers,
            Role::Control => window.control,
        }
    }
}

/// A trasher (or the control) instance and where it is in its life.
struct Trasher {
    name: String,
    role: Role,
    instance: Box<dyn Instance>,
    state: TrasherState,
}

impl Trasher {
    /// A paused process would hold up its termination (its SIGTERM grace).
    fn resume_if_paused(&mut self) {
        if self.state == TrasherState::Paused {
            let _ = self.instance.resume();
            self.state = TrasherState::Running;
        }
    }
}

impl Drop for Trasher {
    /// Also on the error paths, where the experiment drops its trashers as they are.
    fn drop(&mut self) {
        self.resume_if_paused();
    }
}

/// How many whole samples a window must hold at the least; a workload whose
/// operations take longer gets longer windows.
const SAMPLES_PER_WINDOW: f64 = 3.0;

/// A report longer than this many --sample came from a long operation (the
/// worker reports at the end of the first operation after --sample); one a
/// few milliseconds over --sample only came late down the pipe.
const LONG_REPORT: f64 = 1.25;

/// How long to wait for a worker's first reports before giving up on it.
const SLOWEST_WARMUP: Duration = Duration::from_secs(120);

fn run_once(
    cfg: &StressConfig,
    env: &Env,
    platform: PlatformKind,
    run: u32,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
    progress: &mut impl FnMut(&StressProgress),
) -> Result<RunOutcome, StressError> {
    let sample_arg = format!("{}ms", cfg.sample_every.as_millis());
    // The worker outlives the run (which slow operations may lengthen); it is
    // stopped when the last window ends.
    let duration_arg = format!("{}s", (cfg.run_length() * 4 + SLOWEST_WARMUP).as_secs());
    let mut worker_args = cfg.worker.clone();
    worker_args.extend(["--duration".into(), duration_arg.clone(), "--report-every".into(), sample_arg]);
    let worker_spec = InstanceSpec {
        name: worker_name(platform, run),
        workload: worker_args,
        output: Output::Capture,
        cpus: placement(None),
        memory_limit: None,
        user_root: None,
    };
    let mut worker = platform.create(&worker_spec, env)?;
    observer.created(&worker_spec, worker.as_ref())?;
    let output = worker.take_output().ok_or(StressError::NoOutput)?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            if let Some(Line::Interval(s)) = Line::parse(&line) {
                if tx.send((Instant::now(), s)).is_err() {
                    break;
                }
            }
        }
    });

    // Every trasher is set up (held) before the worker starts, so setting one
    // up (a microVM's boot) neither delays its start nor disturbs the worker.
    // The control shares the first trasher's CPU, as it stands in for it.
    let mut trashers: Vec<Trasher> = Vec::new();
    let roles = (1..=cfg.trashers).map(Role::Trasher).chain(cfg.control.as_ref().map(|_| Role::Control));
    for role in roles {
        let (name, mut args, cpus) = match role {
            Role::Trasher(k) => (trasher_name(k, platform, run), cfg.trasher.clone(), placement(Some(k))),
            Role::Control => (control_name(platform, run), cfg.control.clone().unwrap_or_default(), placement(Some(1))),
        };
        args.extend(["--duration".into(), duration_arg.clone()]);
        let spec = InstanceSpec { name, workload: args, output: Output::Discard, cpus, memory_limit: None, user_root: None };
        let instance = platform.create(&spec, env)?;
        observer.created(&spec, instance.as_ref())?;
        trashers.push(Trasher { name: spec.name, role, instance, state: TrasherState::Held });
    }
    worker.wait_ready()?;
    for t in &mut trashers {
        t.instance.wait_ready()?;
    }
    worker.start()?;
    observer.started(&worker_spec.name);
    let t0 = Instant::now();
    let mut received: Vec<(f64, lockscope_workloads::meter::Sample)> = Vec::new();
    // Laid out after the warm-up; each window's start moves to when its trashers were set.
    let mut windows: Option<Vec<Window>> = None;
    let mut note = None;
    let mut current: Option<usize> = None;
    let mut interrupted = false;
    loop {
        while let Ok((at, s)) = rx.recv_timeout(Duration::from_millis(20)) {
            received.push((at.saturating_duration_since(t0).as_secs_f64(), s));
        }
        let now = t0.elapsed();
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        if let Some(exit) = worker.try_wait() {
            return Err(StressError::WorkerEnded { exit, platform, run });
        }
        // After the warm-up (and two reports, however long they take), the
        // windows are laid out, lengthened if one report took long.
        if windows.is_none() && now >= cfg.warmup && received.len() >= 2 {
            let (window, why) = window_length(cfg, &received);
            note = why.map(|w| format!("{platform} run {run}: {w}"));
            windows = Some(cfg.windows(window, now));
        } else if windows.is_none() && now >= cfg.warmup + SLOWEST_WARMUP {
            return Err(StressError::WorkerTooSlow { secs: now.as_secs(), platform, run });
        }
        let Some(ws) = &mut windows else {
            progress(&StressProgress { platform, run, elapsed_in_run: now, window: None, trashers: 0, control: false, last: None });
            continue;
        };
        let t = now.as_secs_f64();
        let Some(i) = ws.iter().position(|w| t < w.end) else { break };
        if current != Some(i) {
            current = Some(i);
            for t in &mut trashers {
                let wanted = t.role.runs_in(&ws[i]);
                match (t.state, wanted) {
                    (TrasherState::Held, true) => {
                        t.instance.start()?;
                        observer.started(&t.name);
                    }
                    (TrasherState::Paused, true) => t.instance.resume()?,
                    (TrasherState::Running, false) => t.instance.pause()?,
                    _ => continue,
                }
                t.state = if wanted { TrasherState::Running } else { TrasherState::Paused };
            }
            ws[i].start = ws[i].start.max(t0.elapsed().as_secs_f64());
        }
        let last = received.last().map(|(at, s)| sample(platform, run, *at, *at, s, &[]));
        progress(&StressProgress {
            platform,
            run,
            elapsed_in_run: now,
            window: Some((i, ws.len())),
            trashers: ws[i].trashers,
            control: ws[i].control,
            last: last.as_ref(),
        });
    }
    for t in &mut trashers {
        t.resume_if_paused();
        t.instance.stop();
        observer.stopped(&t.name, t.instance.try_wait());
    }
    worker.stop();
    observer.stopped(&worker_spec.name, worker.try_wait());
    while let Ok((at, s)) = rx.recv_timeout(Duration::from_millis(200)) {
        received.push((at.saturating_duration_since(t0).as_secs_f64(), s));
    }
    let windows = windows.unwrap_or_default();
    let unit = received.last().map(|(_, s)| s.unit.clone()).unwrap_or_default();
    // A report spans from the one before it (the first, from the start).
    let samples = received
        .iter()
        .enumerate()
        .map(|(i, (end, s))| sample(platform, run, if i == 0 { 0.0 } else { received[i - 1].0 }, *end, s, &windows))
        .collect();
    Ok(RunOutcome { samples, unit, windows, note, interrupted })
}

/// A report received over [begin, end] as a sample, placed in the window
/// that holds it whole.
fn sample(platform: PlatformKind, run: u32, begin: f64, end: f64, s: &lockscope_workloads::meter::Sample, windows: &[Window]) -> Sample {
    let window = windows.iter().position(|w| w.start <= begin && end <= w.end);
    let (trashers, control) = window.map_or((0, false), |i| (windows[i].trashers, windows[i].control));
    Sample { platform, run, t: end, window, trashers, control, ops_per_sec: s.ops_per_sec }
}

/// The window length for this run: as asked, or long enough to hold
/// [`SAMPLES_PER_WINDOW`] of the warm-up's longest report, with the reason.
fn window_length(cfg: &StressConfig, received: &[(f64, lockscope_workloads::meter::Sample)]) -> (Duration, Option<String>) {
    // The first report also spans the worker's set-up: not an operation's length.
    let longest = received.windows(2).map(|p| p[1].0 - p[0].0).fold(0.0, f64::max);
    let needed = Duration::from_secs_f64(longest * SAMPLES_PER_WINDOW);
    if needed <= cfg.window || longest <= LONG_REPORT * cfg.sample_every.as_secs_f64() {
        return (cfg.window, None);
    }
    let samples = needed.as_secs_f64() / cfg.sample_every.as_secs_f64();
    let window = cfg.sample_every * samples.ceil() as u32;
    let why = format!(
        "a report took {longest:.1} s (an operation longer than --sample): windows lengthened from {} to {} s so each holds {SAMPLES_PER_WINDOW} reports",
        cfg.window.as_secs_f64(),
        window.as_secs_f64()
    );
    (window, Some(why))
}

/// The windows of one kind (a trasher count, or the control) in every run.
struct Measured {
    /// The median throughput of those windows.
    ops_per_sec: f64,
    /// Per run, each window's slowdown in the plan's order; None where it or
    /// a baseline either side was not measured.
    per_run: Vec<Vec<Option<f64>>>,
}

fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.into_iter().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Pools a platform's runs: the throughput line (sample slot i of every
/// run), the baseline, and each trasher count's slowdown with its interval.
fn summarize(platform: PlatformKind, unit: String, windows: Vec<Window>, samples: &[Sample], cfg: &StressConfig) -> Series {
    let mine: Vec<&Sample> = samples.iter().filter(|s| s.platform == platform).collect();
    let step = cfg.sample_every.as_secs_f64();
    let mut slots: std::collections::BTreeMap<i64, Vec<&Sample>> = Default::default();
    for s in mine.iter().filter(|s| s.t >= cfg.warmup.as_secs_f64()) {
        slots.entry((s.t / step).round() as i64).or_default().push(s);
    }
    let points = slots
        .iter()
        .map(|(&i, group)| Point {
            t: i as f64 * step,
            trashers: group.iter().map(|s| s.trashers).min().unwrap_or(0),
            ops_per_sec: mean(group.iter().map(|s| s.ops_per_sec)).unwrap_or(0.0),
        })
        .collect();
    // Each window's throughput, per run: the median of its samples, so one
    // sample caught in a stall (a journal commit) does not move the window.
    let plan = cfg.windows(cfg.window, Duration::ZERO);
    let mut by_window: std::collections::BTreeMap<(u32, usize), Vec<f64>> = Default::default();
    for s in &mine {
        if let Some(w) = s.window {
            by_window.entry((s.run, w)).or_default().push(s.ops_per_sec);
        }
    }
    let throughput = |run: u32, w: usize| by_window.get(&(run, w)).and_then(|v| median(v));
    let runs: std::collections::BTreeSet<u32> = mine.iter().map(|s| s.run).collect();
    let baselines: Vec<f64> =
        runs.iter().flat_map(|&r| (0..plan.len()).filter(|&w| plan[w].is_baseline()).filter_map(move |w| throughput(r, w))).collect();
    let baseline = median(&baselines).unwrap_or(0.0);
    // The windows `picked` chooses; a stressed window's baselines are w − 1 and w + 1.
    let measure = |picked: &dyn Fn(&Window) -> bool| {
        let mut throughputs = Vec::new();
        let mut per_run: Vec<Vec<Option<f64>>> = Vec::new();
        for &r in &runs {
            let slowdowns = (1..plan.len() - 1).filter(|&w| picked(&plan[w])).map(|w| {
                let b = throughput(r, w)?;
                throughputs.push(b);
                let (before, after) = (throughput(r, w - 1)?, throughput(r, w + 1)?);
                Some(1.0 - b / ((before + after) / 2.0))
            });
            per_run.push(slowdowns.collect());
        }
        Measured { ops_per_sec: median(&throughputs).unwrap_or(0.0), per_run }
    };
    let measured = |per_run: &[Vec<Option<f64>>]| per_run.iter().map(|r| r.iter().flatten().copied().collect()).collect::<Vec<Vec<f64>>>();
    let per_level: Vec<(u32, Measured)> = (1..=cfg.trashers).map(|k| (k, measure(&|w| w.trashers == k))).collect();
    let levels: Vec<Level> = per_level
        .iter()
        .filter_map(|(k, m)| Some(Level { trashers: *k, ops_per_sec: m.ops_per_sec, slowdown: Slowdown::of_runs(&measured(&m.per_run))? }))
        .collect();
    let control = cfg.control.as_ref().and_then(|_| {
        let Measured { ops_per_sec, per_run } = measure(&|w| w.control);
        // Cycle by cycle, one trasher's window less the control's beside it.
        let (_, one_trasher) = per_level.first()?;
        let beyond: Vec<Vec<f64>> = one_trasher
            .per_run
            .iter()
            .zip(&per_run)
            .map(|(t, c)| t.iter().zip(c).filter_map(|(t, c)| Some((*t)? - (*c)?)).collect())
            .collect();
        Some(ControlLevel { ops_per_sec, slowdown: Slowdown::of_runs(&measured(&per_run))?, beyond: Slowdown::of_runs(&beyond) })
    });
    Series { platform, unit, baseline, points, levels, control, windows }
}

/// Writes stress.csv, stress.json, stress.svg and stress.png in `dir`; the
/// JSON last, as its presence marks a finished experiment. Returns a warning
/// where no figure could be drawn (the CSV and JSON show what there was).
pub fn write_outputs(result: &StressResult, dir: &std::path::Path) -> Result<Option<String>, StressError> {
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| StressError::Write { path, source })
    };
    write("stress.csv", samples_csv(&result.samples))?;
    let warning = match crate::figure::write(result, &dir.join("stress")) {
        Err(e @ crate::figure::FigureError::Empty) => Some(format!("{}: {e}", dir.display())),
        other => other.map(|()| None)?,
    };
    write("stress.json", serde_json::to_string_pretty(result).expect("a stress result serializes"))?;
    Ok(warning)
}

/// The samples as CSV: platform, run, t, window (empty where in none),
/// trashers, control (1 where it ran), ops_per_sec.
pub fn samples_csv(samples: &[Sample]) -> String {
    let mut out = String::from("platform,run,t,window,trashers,control,ops_per_sec\n");
    for s in samples {
        let window = s.window.map_or(String::new(), |w| w.to_string());
        let control = u8::from(s.control);
        out.push_str(&format!("{},{},{:.3},{window},{},{control},{:.3}\n", s.platform, s.run, s.t, s.trashers, s.ops_per_sec));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> StressConfig {
        StressConfig {
            platforms: vec![PlatformKind::Host],
            worker: vec!["file-create".into()],
            trasher: vec!["trasher".into()],
            control: None,
            trashers: 2,
            window: Duration::from_secs(2),
            cycles: 2,
            warmup: Duration::from_secs(1),
            sample_every: Duration::from_secs(1),
            runs: 2,
            private_fs: false,
        }
    }

    #[test]
    fn stressed_windows_alternate_with_baselines_per_trasher_count() {
        let w = cfg().windows(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(w.iter().map(|w| w.trashers).collect::<Vec<_>>(), [0, 1, 0, 1, 0, 2, 0, 2, 0]);
        assert_eq!((w[0].start, w[0].end, w[8].end), (1.0, 3.0, 19.0));
        assert_eq!(cfg().run_length(), Duration::from_secs(19));
    }

    /// Samples of one run: `per_window[i]` the worker's rate in window i, two samples each.
    fn run_of(run: u32, per_window: &[f64]) -> Vec<Sample> {
        run_with(&cfg(), run, per_window)
    }

    fn run_with(cfg: &StressConfig, run: u32, per_window: &[f64]) -> Vec<Sample> {
        let windows = cfg.windows(Duration::from_secs(2), Duration::from_secs(1));
        let sample = |t, window, w: &Window, ops_per_sec| Sample {
            platform: PlatformKind::Host,
            run,
            t,
            window,
            trashers: w.trashers,
            control: w.control,
            ops_per_sec,
        };
        let mut out = vec![sample(1.0, None, &windows[0], 1.0)];
        for (i, (w, &rate)) in windows.iter().zip(per_window).enumerate() {
            for t in [w.start + 1.0, w.end] {
                out.push(sample(t, Some(i), w, rate));
            }
        }
        out
    }

    #[test]
    fn the_control_runs_beside_the_first_trasher_count_and_what_the_trasher_costs_beyond_it_is_said() {
        let cfg = StressConfig { control: Some(vec!["trasher".into(), "--target".into(), "memory".into()]), ..cfg() };
        let w = cfg.windows(Duration::from_secs(2), Duration::ZERO);
        let states: Vec<(u32, bool)> = w.iter().map(|w| (w.trashers, w.control)).collect();
        let (b, c) = ((0, false), (0, true));
        assert_eq!(states, [b, (1, false), b, c, b, (1, false), b, c, b, (2, false), b, (2, false), b]);
        assert_eq!(cfg.run_length(), Duration::from_secs(1 + 13 * 2));
        assert!(w.iter().filter(|w| w.is_baseline()).count() == 7, "a control window is no baseline");
        // One trasher costs 20% and 22% (run 2: 21%, 23%), the control 15% and 16% (16%, 16%).
        let a = [100.0, 80.0, 100.0, 85.0, 100.0, 78.0, 100.0, 84.0, 100.0, 50.0, 100.0, 50.0, 100.0];
        let b = [100.0, 79.0, 100.0, 84.0, 100.0, 77.0, 100.0, 84.0, 100.0, 50.0, 100.0, 50.0, 100.0];
        let s = summarize(PlatformKind::Host, "op".into(), vec![], &[run_with(&cfg, 1, &a), run_with(&cfg, 2, &b)].concat(), &cfg);
        assert_eq!(s.baseline, 100.0, "the control's windows are no baselines");
        let control = s.control.expect("the control measured");
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(control.slowdown.slowdown, 0.16) && control.slowdown.interference, "{control:?}");
        let beyond = control.beyond.expect("cycles with both");
        // Cycle by cycle: 5, 6 (run 1) and 5, 7 (run 2) points.
        assert!(close(beyond.slowdown, 0.055) && beyond.interference && beyond.windows == 4, "{beyond:?}");
        assert!(close(s.levels[0].slowdown.slowdown, 0.215), "{:?}", s.levels[0]);
        let csv = samples_csv(&run_with(&cfg, 1, &a));
        assert!(csv.contains("\nhost,1,8.000,3,0,1,85.000\n"), "the control's samples are marked: {csv}");
        assert!(cfg.validate().is_ok());
        let empty = StressConfig { control: Some(vec![]), ..cfg };
        assert!(empty.validate().is_err());
    }

    #[test]
    fn a_workload_s_own_drift_is_not_read_as_interference() {
        // Throughput falling 10 per window whatever runs beside it.
        let drifting: Vec<f64> = (0..9).map(|i| 200.0 - 10.0 * i as f64).collect();
        let samples = [run_of(1, &drifting), run_of(2, &drifting)].concat();
        let s = summarize(PlatformKind::Host, "op".into(), vec![], &samples, &cfg());
        for level in s.levels.iter().map(|l| &l.slowdown) {
            assert!(level.slowdown.abs() < 1e-9 && !level.interference, "{level:?}");
            assert_eq!((level.windows, level.runs), (4, 2), "2 cycles x 2 runs");
            assert!(level.describe().starts_with("none ["), "{}", level.describe());
        }
        assert!(s.points.iter().all(|p| p.t >= 1.0), "the warm-up is left out of the line");
    }

    #[test]
    fn slowdowns_are_measured_against_the_baselines_either_side() {
        // Baselines 100; one trasher costs 20%, two 50%, with some scatter.
        let a = [100.0, 80.0, 100.0, 82.0, 100.0, 50.0, 100.0, 52.0, 100.0];
        let b = [100.0, 78.0, 100.0, 80.0, 100.0, 48.0, 100.0, 50.0, 100.0];
        let samples = [run_of(1, &a), run_of(2, &b)].concat();
        let s = summarize(PlatformKind::Host, "op".into(), vec![], &samples, &cfg());
        assert_eq!(s.baseline, 100.0);
        let one = &s.levels[0].slowdown;
        // Level 1's windows lost 20% and 18% (run 1: 19%), 22% and 20% (run 2: 21%).
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(one.slowdown, 0.20) && close(one.ci_low, 0.20 - 0.127_06) && close(one.ci_high, 0.20 + 0.127_06), "{one:?}");
        assert_eq!((one.windows, one.runs, one.describe().as_str()), (4, 2, "20.0% slower [+7.3%, +32.7%]"));
        assert!(close(s.levels[1].slowdown.slowdown, 0.50));
        let csv = samples_csv(&samples);
        assert!(
            csv.starts_with("platform,run,t,window,trashers,control,ops_per_sec\nhost,1,1.000,,0,0,1.000\nhost,1,2.000,0,0,0,100.000\n"),
            "{csv}"
        );
    }

    #[test]
    fn a_run_without_a_measured_stressed_window_is_said() {
        let a = [100.0, 80.0, 100.0, 82.0, 100.0, 50.0, 100.0, 52.0, 100.0];
        // Run 2's worker stalled across the edges of its 1-trasher windows: none holds a whole report.
        let mut b = run_of(2, &a);
        b.retain(|s| s.trashers != 1);
        let s = summarize(PlatformKind::Host, "op".into(), vec![], &[run_of(1, &a), b].concat(), &cfg());
        assert_eq!(
            s.lost_runs(2),
            ["host, 1 trasher(s): measured in 1 of 2 runs; in the others no stressed window between two measured baselines: the worker's reports straddled the windows' edges (longer windows would hold them)"]
        );
        assert!(!s.levels[0].slowdown.interference, "two windows of one run support no claim: {:?}", s.levels[0]);
        assert_eq!(s.levels[1].slowdown.runs, 2);
    }

    #[test]
    fn the_worker_s_exposure_is_to_its_own_run_s_trashers_together() {
        let a = [100.0, 80.0, 100.0, 82.0, 100.0, 50.0, 100.0, 52.0, 100.0];
        let series = summarize(PlatformKind::Host, "op".into(), vec![], &[run_of(1, &a), run_of(2, &a)].concat(), &cfg());
        let result = StressResult {
            worker: "file-create".into(),
            trasher: "trasher".into(),
            control: None,
            window_secs: 2.0,
            cycles: 2,
            warmup_secs: 1.0,
            sample_secs: 1.0,
            runs: 2,
            complete: true,
            notes: vec![],
            series: vec![series],
            samples: vec![],
        };
        let exposure = |waiter: &str, holder: &str, exposure| Exposure {
            waiter: waiter.into(),
            holder: holder.into(),
            exposure,
            basis: lockscope_analysis::score::Basis::Measured,
        };
        let exposures = [
            exposure("worker-host-1", "trasher1-host-1", 0.01),
            exposure("worker-host-1", "trasher2-host-1", 0.02),
            // Another run's trasher, and a trasher's own exposure, are not the worker's.
            exposure("worker-host-1", "trasher1-host-2", 0.5),
            exposure("trasher1-host-1", "worker-host-1", 0.7),
            exposure("worker-host-2", "trasher1-host-2", 0.0),
        ];
        assert_eq!(worker_exposures(&result, &exposures), [0.03, 0.0]);
        assert_eq!(worker_exposures(&result, &exposures[..4]), [0.03], "a run whose worker was not recorded is left out");
    }

    fn report(t: f64) -> (f64, lockscope_workloads::meter::Sample) {
        (t, lockscope_workloads::meter::Sample { workload: "w".into(), unit: "op".into(), t, ops: 1, seconds: 1.0, ops_per_sec: 1.0 })
    }

    #[test]
    fn a_report_begun_before_the_trashers_were_set_is_in_no_window() {
        // Planned to start at 1.0 s; the runtime's resume returned at 1.2 s.
        let windows =
            [Window { start: 0.5, end: 1.0, trashers: 0, control: false }, Window { start: 1.2, end: 1.5, trashers: 1, control: false }];
        let placed = |begin, end| sample(PlatformKind::Runc, 1, begin, end, &report(end).1, &windows).window;
        assert_eq!(placed(1.05, 1.175), None, "while the runtime resumed the trasher");
        assert_eq!(placed(1.15, 1.275), None, "straddling the resume's end");
        assert_eq!(placed(1.275, 1.4), Some(1));
        assert_eq!(placed(0.6, 0.725), Some(0));
    }

    #[test]
    fn a_slow_operation_lengthens_the_windows() {
        let (window, why) = window_length(&cfg(), &[report(5.0), report(6.0), report(7.5)]);
        assert_eq!(
            (window, why),
            (
                Duration::from_secs(5),
                Some(
                    "a report took 1.5 s (an operation longer than --sample): windows lengthened from 2 to 5 s so each holds 3 reports"
                        .into()
                )
            )
        );
        let (window, why) = window_length(&cfg(), &[report(5.0), report(6.04), report(7.08)]);
        assert_eq!((window, why), (Duration::from_secs(2), None), "reports a little late down the pipe are no long operations");
        let (window, why) = window_length(&cfg(), &[report(30.0), report(30.5)]);
        assert_eq!((window, why), (Duration::from_secs(2), None), "the first report's set-up does not count");
    }

    #[test]
    fn refuses_settings_it_cannot_honour() {
        let mut c = cfg();
        c.window = Duration::from_millis(1500);
        assert!(c.validate().is_err(), "a window must hold two samples");
        let mut c = cfg();
        c.worker.push("--duration".into());
        assert!(c.validate().unwrap_err().to_string().contains("set by stress itself"));
        for zero in [|c: &mut StressConfig| c.runs = 0, |c: &mut StressConfig| c.cycles = 0, |c: &mut StressConfig| c.trashers = 0] {
            let mut c = cfg();
            zero(&mut c);
            assert!(c.validate().is_err());
        }
        assert!(cfg().validate().is_ok());
    }
}
