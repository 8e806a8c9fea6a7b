//! The interference experiment (paper 5.3 and 7): a worker runs alone for
//! one interval (its baseline), then a trasher joins every interval, each on
//! a core of its own where cores allow, and the worker's throughput is
//! sampled throughout. Repeated per platform and per run; runs are averaged.

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use lockscope_bpf::{RecordError, RecordOptions, Session, WorkloadId};
use lockscope_platform::{Env, Instance, InstanceSpec, Output, PlatformError, PlatformKind};
use lockscope_trace::{EndReason, Selector, Trace};
use lockscope_workloads::meter::Line;

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
    #[error("writing {path}: {source}")]
    Write { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Figure(#[from] crate::figure::FigureError),
}

#[derive(Clone, Debug)]
pub struct StressConfig {
    pub platforms: Vec<PlatformKind>,
    /// Arguments of `lockscope workload` for the worker (e.g. `file-create --files 2000`).
    pub worker: Vec<String>,
    /// Arguments of `lockscope workload` for each trasher (e.g. `trasher --target fs`).
    pub trasher: Vec<String>,
    /// How many trashers join, one per interval (paper: 7).
    pub trashers: u32,
    /// Time between trashers; the worker's baseline is the first (paper: 10 minutes).
    pub interval: Duration,
    /// How often the worker reports its throughput.
    pub sample_every: Duration,
    /// Repetitions per platform, averaged (paper: 3).
    pub runs: u32,
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
        if self.runs == 0 {
            return bad("--runs must be at least 1".into());
        }
        if self.sample_every.is_zero() || self.interval < self.sample_every * 2 {
            return bad(format!("--interval ({:?}) must hold at least two samples of --sample ({:?})", self.interval, self.sample_every));
        }
        for args in [&self.worker, &self.trasher] {
            if let Some(a) = args.iter().find(|a| ["--duration", "--rounds", "--report-every"].contains(&a.as_str())) {
                return bad(format!("{a} is set by stress itself; leave it out of the workload's arguments"));
            }
        }
        Ok(())
    }

    /// The length of one run.
    pub fn run_length(&self) -> Duration {
        self.interval * (self.trashers + 1)
    }
}

/// One throughput sample of the worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub platform: PlatformKind,
    pub run: u32,
    /// Seconds since the worker started, at the end of the sample.
    pub t: f64,
    /// Trashers running throughout the sample.
    pub trashers: u32,
    /// A trasher joined during the sample: it belongs to no trasher count,
    /// so baselines and levels leave it out.
    pub transition: bool,
    pub ops_per_sec: f64,
}

/// The averaged series of one platform.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Series {
    pub platform: PlatformKind,
    /// What one of the worker's operations is.
    pub unit: String,
    /// Mean throughput with no trasher running.
    pub baseline: f64,
    /// Mean throughput over runs, per sample slot.
    pub points: Vec<Point>,
    /// Mean throughput and slowdown at each trasher count.
    pub levels: Vec<Level>,
    /// Seconds (since the worker started) at which trashers joined, run 1.
    pub trasher_starts: Vec<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Point {
    pub t: f64,
    pub trashers: u32,
    pub ops_per_sec: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Level {
    pub trashers: u32,
    pub ops_per_sec: f64,
    /// 1 - ops_per_sec / baseline: the share of throughput lost.
    pub slowdown: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StressResult {
    pub worker: String,
    pub trasher: String,
    pub interval_secs: f64,
    pub sample_secs: f64,
    pub runs: u32,
    /// False when interrupted: the series hold what was measured.
    pub complete: bool,
    pub series: Vec<Series>,
    pub samples: Vec<Sample>,
}

/// What the runner reports while it works.
pub struct StressProgress<'a> {
    pub platform: PlatformKind,
    pub run: u32,
    pub elapsed_in_run: Duration,
    pub trashers: u32,
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
    let mut trace = lockscope_bpf::record(&RecordOptions::default(), |session| {
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
    let mut units = Vec::new();
    let mut starts = Vec::new();
    let mut complete = true;
    'platforms: for &platform in &cfg.platforms {
        for run in 1..=cfg.runs {
            if stop.load(Ordering::Relaxed) {
                complete = false;
                break 'platforms;
            }
            let outcome = run_once(cfg, env, platform, run, stop, observer, &mut progress)?;
            samples.extend(outcome.samples);
            if run == 1 {
                units.push((platform, outcome.unit));
                starts.push((platform, outcome.trasher_starts));
            }
            if outcome.interrupted {
                complete = false;
                break 'platforms;
            }
        }
    }
    let series = units
        .into_iter()
        .zip(starts)
        .map(|((platform, unit), (_, trasher_starts))| summarize(platform, unit, trasher_starts, &samples, cfg))
        .collect();
    Ok(StressResult {
        worker: cfg.worker.join(" "),
        trasher: cfg.trasher.join(" "),
        interval_secs: cfg.interval.as_secs_f64(),
        sample_secs: cfg.sample_every.as_secs_f64(),
        runs: cfg.runs,
        complete,
        series,
        samples,
    })
}

struct RunOutcome {
    samples: Vec<Sample>,
    unit: String,
    trasher_starts: Vec<f64>,
    interrupted: bool,
}

/// CPUs: the worker on the first, trashers spread over the others (all on
/// one CPU where there is no other).
fn placement(trasher: Option<u32>) -> Option<Vec<usize>> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        return None;
    }
    Some(vec![match trasher {
        None => 0,
        Some(k) => 1 + (k as usize - 1) % (cpus - 1),
    }])
}

fn run_once(
    cfg: &StressConfig,
    env: &Env,
    platform: PlatformKind,
    run: u32,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
    progress: &mut impl FnMut(&StressProgress),
) -> Result<RunOutcome, StressError> {
    let length = cfg.run_length();
    let sample_arg = format!("{}ms", cfg.sample_every.as_millis());
    // The worker outlives the run; it is stopped when the last interval ends.
    let duration_arg = format!("{}s", (length + Duration::from_secs(60)).as_secs());
    let mut worker_args = cfg.worker.clone();
    worker_args.extend(["--duration".into(), duration_arg.clone(), "--report-every".into(), sample_arg]);
    let worker_spec = InstanceSpec {
        name: format!("worker-{platform}-{run}"),
        workload: worker_args,
        output: Output::Capture,
        cpus: placement(None),
        memory_limit: None,
    };
    let mut worker = platform.create(&worker_spec, env)?;
    observer.created(&worker_spec, worker.as_ref())?;
    let output = worker.take_output().ok_or(StressError::NoOutput)?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            if let Some(parsed) = Line::parse(&line) {
                if tx.send((Instant::now(), parsed)).is_err() {
                    break;
                }
            }
        }
    });

    // Every trasher is set up (held) before the worker starts, so setting one
    // up (a microVM's boot) neither delays its start nor disturbs the worker.
    let mut trashers: Vec<(String, Box<dyn Instance>)> = Vec::new();
    for k in 1..=cfg.trashers {
        let mut args = cfg.trasher.clone();
        args.extend(["--duration".into(), duration_arg.clone()]);
        let spec = InstanceSpec {
            name: format!("trasher{k}-{platform}-{run}"),
            workload: args,
            output: Output::Discard,
            cpus: placement(Some(k)),
            memory_limit: None,
        };
        let t = platform.create(&spec, env)?;
        observer.created(&spec, t.as_ref())?;
        trashers.push((spec.name, t));
    }
    let mut trasher_starts: Vec<Duration> = Vec::new();
    let mut samples = Vec::new();
    let mut unit = String::new();
    worker.start()?;
    observer.started(&worker_spec.name);
    let t0 = Instant::now();
    let mut interrupted = false;
    let take = |received: Instant, line: Line, trasher_starts: &[Duration], samples: &mut Vec<Sample>, unit: &mut String| {
        let Line::Interval(s) = line else { return };
        let end = received.saturating_duration_since(t0);
        let begin = end.saturating_sub(cfg.sample_every);
        *unit = s.unit;
        samples.push(Sample {
            platform,
            run,
            t: end.as_secs_f64(),
            trashers: trasher_starts.iter().filter(|&&at| at <= begin).count() as u32,
            transition: trasher_starts.iter().any(|&at| at > begin && at <= end),
            ops_per_sec: s.ops_per_sec,
        });
    };
    loop {
        let elapsed = t0.elapsed();
        if elapsed >= length {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        if let Some(exit) = worker.try_wait() {
            return Err(StressError::WorkerEnded { exit, platform, run });
        }
        let started = trasher_starts.len();
        if started < trashers.len() && elapsed >= cfg.interval * (started as u32 + 1) {
            let (name, trasher) = &mut trashers[started];
            trasher.start()?;
            observer.started(name);
            trasher_starts.push(t0.elapsed());
        }
        while let Ok((received, line)) = rx.recv_timeout(Duration::from_millis(50)) {
            take(received, line, &trasher_starts, &mut samples, &mut unit);
        }
        progress(&StressProgress {
            platform,
            run,
            elapsed_in_run: t0.elapsed(),
            trashers: trasher_starts.len() as u32,
            last: samples.last(),
        });
    }
    for (name, mut t) in trashers {
        t.stop();
        observer.stopped(&name, t.try_wait());
    }
    worker.stop();
    observer.stopped(&worker_spec.name, worker.try_wait());
    while let Ok((received, line)) = rx.recv_timeout(Duration::from_millis(200)) {
        take(received, line, &trasher_starts, &mut samples, &mut unit);
    }
    // A sample that ended after the run did is not part of it.
    samples.retain(|s| s.t <= length.as_secs_f64() + cfg.sample_every.as_secs_f64() / 2.0);
    Ok(RunOutcome { samples, unit, trasher_starts: trasher_starts.iter().map(Duration::as_secs_f64).collect(), interrupted })
}

fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.into_iter().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Averages a platform's runs: sample slot i of every run, the baseline
/// (no trasher), and each trasher count's mean and slowdown.
fn summarize(platform: PlatformKind, unit: String, trasher_starts: Vec<f64>, samples: &[Sample], cfg: &StressConfig) -> Series {
    let mine: Vec<&Sample> = samples.iter().filter(|s| s.platform == platform).collect();
    let step = cfg.sample_every.as_secs_f64();
    let slot = |s: &Sample| (s.t / step).round() as i64;
    let mut slots: std::collections::BTreeMap<i64, Vec<&Sample>> = Default::default();
    for s in &mine {
        slots.entry(slot(s)).or_default().push(s);
    }
    let points = slots
        .iter()
        .map(|(&i, group)| Point {
            t: i as f64 * step,
            // Runs may differ by a sample at a boundary: the fewer trashers is the honest label.
            trashers: group.iter().map(|s| s.trashers).min().unwrap_or(0),
            ops_per_sec: mean(group.iter().map(|s| s.ops_per_sec)).unwrap_or(0.0),
        })
        .collect();
    let at = |k: u32| mean(mine.iter().filter(|s| s.trashers == k && !s.transition).map(|s| s.ops_per_sec));
    let baseline = at(0).unwrap_or(0.0);
    let levels = (0..=cfg.trashers)
        .filter_map(|k| {
            at(k).map(|ops| Level { trashers: k, ops_per_sec: ops, slowdown: if baseline > 0.0 { 1.0 - ops / baseline } else { 0.0 } })
        })
        .collect();
    Series { platform, unit, baseline, points, levels, trasher_starts }
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

/// The samples as CSV: platform, run, t, trashers, transition, ops_per_sec.
pub fn samples_csv(samples: &[Sample]) -> String {
    let mut out = String::from("platform,run,t,trashers,transition,ops_per_sec\n");
    for s in samples {
        out.push_str(&format!("{},{},{:.3},{},{},{:.3}\n", s.platform, s.run, s.t, s.trashers, s.transition, s.ops_per_sec));
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
            trashers: 2,
            interval: Duration::from_secs(2),
            sample_every: Duration::from_secs(1),
            runs: 2,
        }
    }

    fn sample(run: u32, t: f64, trashers: u32, ops: f64) -> Sample {
        Sample { platform: PlatformKind::Host, run, t, trashers, transition: false, ops_per_sec: ops }
    }

    #[test]
    fn runs_are_averaged_per_slot_and_levels_measured_against_the_baseline() {
        let samples = vec![
            sample(1, 1.0, 0, 100.0),
            sample(1, 2.0, 0, 110.0),
            sample(1, 3.0, 1, 80.0),
            sample(2, 1.02, 0, 90.0),
            sample(2, 2.01, 0, 100.0),
            sample(2, 3.0, 0, 90.0), // run 2's trasher started a little late
            Sample { transition: true, ..sample(2, 4.0, 0, 10.0) },
        ];
        let s = summarize(PlatformKind::Host, "op".into(), vec![2.0], &samples, &cfg());
        assert_eq!(s.baseline, (100.0 + 110.0 + 90.0 + 100.0 + 90.0) / 5.0);
        assert_eq!(s.points.len(), 4);
        assert_eq!(s.points[0].ops_per_sec, 95.0);
        assert_eq!(s.points[2].trashers, 0, "the fewer trashers labels a slot where runs disagree");
        let one = s.levels.iter().find(|l| l.trashers == 1).unwrap();
        assert!((one.slowdown - (1.0 - 80.0 / s.baseline)).abs() < 1e-9);
        assert!(samples_csv(&samples).starts_with("platform,run,t,trashers,transition,ops_per_sec\nhost,1,1.000,0,false,100.000\n"));
    }

    #[test]
    fn refuses_settings_it_cannot_honour() {
        let mut c = cfg();
        c.interval = Duration::from_secs(1);
        assert!(c.validate().is_err(), "an interval must hold two samples");
        let mut c = cfg();
        c.worker.push("--duration".into());
        assert!(c.validate().unwrap_err().to_string().contains("set by stress itself"));
        let mut c = cfg();
        c.runs = 0;
        assert!(c.validate().is_err());
        assert!(cfg().validate().is_ok());
    }
}
