//! The study: the paper's experiment end to end. The built-in
//! microbenchmarks, two identical instances at a time, on each platform;
//! recorded, resolved where the source matches, compared, stressed, and
//! written up as a report. Every finished step is kept on disk, so an
//! interrupted study resumes where it stopped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lockscope_analysis::compare::{self, Comparison};
use lockscope_analysis::html::{self, Against, Correlation, StressFigure};
use lockscope_analysis::stats::{spearman, spearman_interval};
use lockscope_bpf::{probe_hooks, HookStatus, ModeRequest, RecordOptions};
use lockscope_platform::guest::{self, GuestConfig};
use lockscope_platform::{Env, Output, PlacedWorkload, PlatformError, PlatformKind};
use lockscope_trace::{read_trace, write_trace, Counters, DebianKernel, EndReason, Selector, Trace, TraceError};
use serde::Serialize;

use crate::record::{Placement, RecordPlan, RecordingError, Target, WorkloadSpec};
use crate::resolve::{resolve_traces, ResolveError};
use crate::scratch_fs::{ScratchFs, ScratchFsError, PRIVATE_FS_MIB};
use crate::stress::{self, StressConfig, StressError, StressResult};

/// A workload of the study: its name, what each instance runs, and the
/// trasher that stresses what it uses.
#[derive(Debug)]
pub struct StudyWorkload {
    pub name: &'static str,
    pub command: &'static str,
    pub trasher: &'static str,
    pub group: Group,
}

/// The paper's kinds of workload (its Tables 5, 6 and 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// The microbenchmarks (6.1): lockscope's own, run anywhere lockscope is.
    Micro,
    /// The serverless functions (Table 6): Python on the host's libraries
    /// (which every platform gives its workloads).
    Serverless,
    /// The cloud workloads (Table 7): the host's programs.
    Cloud,
}

impl Group {
    pub const ALL: [Group; 3] = [Group::Micro, Group::Serverless, Group::Cloud];

    pub fn name(self) -> &'static str {
        match self {
            Group::Micro => "micro",
            Group::Serverless => "serverless",
            Group::Cloud => "cloud",
        }
    }
}

/// The kernels a study runs its workloads in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StudyKernel {
    /// The kernel lockscope runs on, in the best mode it allows.
    Running,
    /// One of Debian 12's kernels (6.1 is the paper's), booted under qemu:
    /// the host platform inside it, in acquire mode, every acquisition counted.
    Debian(DebianKernel),
}

impl StudyKernel {
    /// Every kernel a study can run in.
    pub fn all() -> impl Iterator<Item = StudyKernel> {
        std::iter::once(StudyKernel::Running).chain(DebianKernel::ALL.map(StudyKernel::Debian))
    }

    pub fn name(self) -> String {
        match self {
            StudyKernel::Running => "running".into(),
            StudyKernel::Debian(kernel) => kernel.name(),
        }
    }

    pub fn parse(name: &str) -> Result<StudyKernel, StudyError> {
        Self::all().find(|k| k.name() == name).ok_or_else(|| StudyError::UnknownKernel(name.to_owned()))
    }

    /// The Debian kernel a guest boots, None for the running kernel.
    fn guest(self) -> Option<DebianKernel> {
        match self {
            StudyKernel::Running => None,
            StudyKernel::Debian(kernel) => Some(kernel),
        }
    }

    /// What its columns add to the platform's name (`host@6.1`).
    fn column_suffix(self) -> Option<&'static str> {
        self.guest().map(DebianKernel::series)
    }
}

/// One experiment of the study: a workload on a platform in a kernel.
#[derive(Clone, Debug, PartialEq)]
struct StudyCell {
    workload: String,
    platform: PlatformKind,
    kernel: StudyKernel,
}

impl StudyCell {
    /// Its column in the report: the platform, and the kernel where it is not the running one.
    fn column(&self) -> String {
        match self.kernel.column_suffix() {
            Some(kernel) => compare::kernel_column(self.platform.name(), kernel),
            None => self.platform.name().to_owned(),
        }
    }

    /// Whether its instances run under qemu's software emulation: a microVM,
    /// or any platform in a guest kernel, on a machine without KVM.
    fn emulated(&self, kvm: bool) -> bool {
        !kvm && (self.kernel != StudyKernel::Running || self.platform.runs_in_qemu())
    }

    /// `file-create@host@6.1`: how its traces and results are named.
    fn id(&self) -> String {
        format!("{}@{}", self.workload, self.column())
    }
}

/// The paper's microbenchmarks (6.1), scaled to a small machine, its
/// serverless functions (Table 6) and its cloud workloads (Table 7) but
/// Feedsim, which is packaged nowhere reachable.
pub const WORKLOADS: [StudyWorkload; 15] = [
    StudyWorkload { name: "mem-8k", command: "mem --size 8k --total 128m", trasher: "trasher --target mm", group: Group::Micro },
    StudyWorkload { name: "mem-1m", command: "mem --size 1m --total 128m", trasher: "trasher --target mm", group: Group::Micro },
    StudyWorkload { name: "file-list", command: "file-list --files 5000", trasher: "trasher --target fs", group: Group::Micro },
    StudyWorkload { name: "file-create", command: "file-create --files 2000", trasher: "trasher --target fs", group: Group::Micro },
    StudyWorkload { name: "file-delete", command: "file-delete --files 2000", trasher: "trasher --target fs", group: Group::Micro },
    StudyWorkload { name: "image-processing", command: "image-processing", trasher: "trasher --target mixed", group: Group::Serverless },
    StudyWorkload { name: "video-processing", command: "video-processing", trasher: "trasher --target mixed", group: Group::Serverless },
    StudyWorkload { name: "face-detection", command: "face-detection", trasher: "trasher --target mixed", group: Group::Serverless },
    StudyWorkload { name: "lr-training", command: "lr-training", trasher: "trasher --target mixed", group: Group::Serverless },
    StudyWorkload { name: "cnn", command: "cnn", trasher: "trasher --target mixed", group: Group::Serverless },
    StudyWorkload { name: "rnn", command: "rnn", trasher: "trasher --target mixed", group: Group::Serverless },
    StudyWorkload { name: "data-caching", command: "data-caching", trasher: "trasher --target mixed", group: Group::Cloud },
    StudyWorkload { name: "data-caching-cold", command: "data-caching-cold", trasher: "trasher --target mixed", group: Group::Cloud },
    StudyWorkload { name: "video-transcode", command: "video-transcode", trasher: "trasher --target mixed", group: Group::Cloud },
    StudyWorkload { name: "graph-analytics", command: "graph-analytics", trasher: "trasher --target mixed", group: Group::Cloud },
];

/// Rows of the paper's tables lockscope cannot run here, with why: the
/// report says so where their group is studied, rather than leave them out.
pub const NOT_AVAILABLE: [(&str, Group, &str); 1] =
    [("feedsim", Group::Cloud, "DCPerf's Feedsim is packaged nowhere this machine can reach (not in Debian, PyPI or crates.io)")];

/// The study's workload named `name`.
pub fn workload(name: &str) -> Result<&'static StudyWorkload, StudyError> {
    if let Some((_, _, why)) = NOT_AVAILABLE.iter().find(|(n, ..)| *n == name) {
        return Err(StudyError::NotAvailable { name: name.to_owned(), why });
    }
    WORKLOADS.iter().find(|w| w.name == name).ok_or_else(|| StudyError::UnknownWorkload(name.to_owned()))
}

/// Notes for the paper's rows that are not run, where all of their group is studied.
fn not_available_notes(workloads: &[String]) -> impl Iterator<Item = String> + '_ {
    NOT_AVAILABLE.iter().filter_map(|(name, group, why)| {
        let whole_group = WORKLOADS.iter().filter(|w| w.group == *group).all(|w| workloads.iter().any(|n| n == w.name));
        whole_group.then(|| format!("{name} ({} group) not studied: {why}", group.name()))
    })
}

/// Workload names and group names (`micro`, `serverless`, `all`) as the
/// workloads they stand for, in order, each once.
pub fn expand_workloads(asked: &[String]) -> Result<Vec<String>, StudyError> {
    let mut names: Vec<String> = vec![];
    for a in asked {
        let group: Vec<&str> = match Group::ALL.iter().find(|g| g.name() == a) {
            Some(&g) => WORKLOADS.iter().filter(|w| w.group == g).map(|w| w.name).collect(),
            None if a == "all" => WORKLOADS.iter().map(|w| w.name).collect(),
            None => vec![workload(a)?.name],
        };
        names.extend(group.into_iter().filter(|n| !names.iter().any(|m| m == n)).map(String::from).collect::<Vec<_>>());
    }
    Ok(names)
}

/// The stress experiment's settings in a study (see [`StressConfig`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct StressSettings {
    pub window: Duration,
    pub cycles: u32,
    pub trashers: u32,
    /// Studies before runs were asked for ran one.
    #[serde(default = "one_run")]
    pub runs: u32,
    /// Also stress the cells that run under qemu's software emulation (a
    /// microVM, or any platform in a guest kernel, on a machine without KVM).
    #[serde(default)]
    pub emulated: bool,
    /// Also run [`CONTROL`] in windows of its own beside the first trasher's:
    /// each cell's slowdown beyond it is ranked against the score too.
    #[serde(default)]
    pub control: bool,
}

/// The study's control beside every trasher: a core busy with memory
/// traffic and no kernel lock (`lockscope stress --help`).
pub const CONTROL: &str = "trasher --target memory";

fn one_run() -> u32 {
    1
}

impl StressSettings {
    /// The stress experiment of study workload `w` on `platform`.
    fn config(&self, w: &StudyWorkload, platform: PlatformKind) -> StressConfig {
        StressConfig {
            platforms: vec![platform],
            worker: shlex::split(w.command).expect("the study's commands are well-formed"),
            trasher: shlex::split(w.trasher).expect("the study's trashers are well-formed"),
            control: self.control.then(|| shlex::split(CONTROL).expect("the control is well-formed")),
            trashers: self.trashers,
            window: self.window,
            cycles: self.cycles,
            // Two reports at the least before the first window, which lays the windows out.
            warmup: self.window.max(Duration::from_secs(1)),
            // Four reports a window, none shorter than 100 ms, so that each counts many operations.
            sample_every: (self.window / 4).max(Duration::from_millis(100)),
            runs: self.runs,
            // The worker's rate on the work directory's file system drifts with whatever ran there before;
            // and the cell's recording ran on a private one too.
            private_fs: true,
        }
    }
}

/// What to study and where to write it.
pub struct StudyConfig {
    /// Directory for the report, tables, traces and stress results.
    pub output: PathBuf,
    /// Platforms to study; empty: every usable one.
    pub platforms: Vec<PlatformKind>,
    /// Kernels to study them in (the host platform only, in a guest kernel);
    /// empty: [`default_kernels`].
    pub kernels: Vec<StudyKernel>,
    /// Names from [`WORKLOADS`] (see [`expand_workloads`]).
    pub workloads: Vec<String>,
    /// How long each pair of instances runs while recorded.
    pub duration: Duration,
    /// Recordings per workload and platform.
    pub runs: u32,
    pub mode: ModeRequest,
    /// None: no stress experiment (and so no check of the isolation score).
    pub stress: Option<StressSettings>,
    /// The kernel source to resolve every trace against (default: Debian's source of its kernel series).
    pub kernel_src: Option<PathBuf>,
    /// Memory limit of each instance, bytes.
    pub memory_limit: Option<u64>,
    /// How long a guest kernel's recording may take, boot included (default:
    /// [`default_guest_timeout`]); a guest still running then fails its step.
    pub guest_timeout: Option<Duration>,
    /// Discard the traces and stress results of an earlier study in `output`.
    pub fresh: bool,
    pub env: Env,
}

/// What makes two studies the same study (so one can resume the other).
#[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
struct Plan {
    workloads: Vec<String>,
    platforms: Vec<String>,
    #[serde(default = "running_kernel_only")]
    kernels: Vec<String>,
    duration_secs: f64,
    runs: u32,
    stress: Option<StressSettings>,
    memory_limit: Option<u64>,
}

/// The kernels of a study written before studies had a choice of kernel.
fn running_kernel_only() -> Vec<String> {
    vec![StudyKernel::Running.name()]
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

/// What a study tells as it goes.
pub enum StudyEvent<'a> {
    /// An earlier study in the output directory is resumed: its finished steps are kept.
    Resuming(&'a Path),
    /// Steps `done` of `total` are finished; `doing` is under way.
    Step { done: u64, total: u64, doing: &'a str },
    /// Something the user should know that does not stop the study.
    Warning(&'a str),
}

/// What a study found, besides what it wrote.
pub struct StudyOutcome {
    pub comparison: Comparison,
    pub correlations: Vec<Correlation>,
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error(
        "unknown workload {0:?}; the study's workloads are {names}, or the groups {groups} and all",
        names = WORKLOADS.map(|w| w.name).join(", "),
        groups = Group::ALL.map(Group::name).join(", ")
    )]
    UnknownWorkload(String),
    #[error("{name} cannot be studied here: {why}")]
    NotAvailable { name: String, why: &'static str },
    #[error("unknown kernel {0:?}; a study runs in {names}", names = StudyKernel::all().map(StudyKernel::name).collect::<Vec<_>>().join(", "))]
    UnknownKernel(String),
    #[error("{} holds a different study ({earlier}); choose another --output, or pass --fresh to start over", dir.display())]
    DifferentStudy { dir: PathBuf, earlier: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("reading {}: {source}", path.display())]
    Manifest { path: PathBuf, source: serde_json::Error },
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("recording {workload} on {platform}: {source}")]
    Record { workload: String, platform: PlatformKind, source: RecordingError },
    #[error("resolving the traces: {0}")]
    Resolve(#[from] ResolveError),
    #[error("stress: {workload} on {platform}: {source}")]
    Stress { workload: String, platform: PlatformKind, source: StressError },
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("a recording's private file system: {0}")]
    PrivateFs(#[from] ScratchFsError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StudyError {
    let what = what.into();
    move |source| StudyError::Io { what, source }
}

/// Runs the study (or resumes it); `stop` ends it early, keeping what finished.
pub fn run(cfg: &StudyConfig, stop: &Arc<AtomicBool>, mut events: impl FnMut(StudyEvent)) -> Result<StudyOutcome, StudyError> {
    for w in &cfg.workloads {
        workload(w)?;
    }
    let mut notes: Vec<String> = not_available_notes(&cfg.workloads).collect();
    let platforms = choose_platforms(&cfg.platforms, &cfg.env, &mut notes)?;
    // `auto` resolved once, by loading programs: for the notes, the default
    // kernels and the mode of the study's own recordings.
    let contention_only = auto_finds_contention_only(cfg.mode);
    // The default kernels include the running one.
    let records_here = cfg.kernels.is_empty() || cfg.kernels.contains(&StudyKernel::Running);
    let running_mode = match contention_only {
        true => {
            notes.extend(records_here.then(|| {
                "this kernel allows contention mode only (no fentry, no kprobes): its recordings count contended acquisitions".into()
            }));
            ModeRequest::Contention
        }
        false => cfg.mode,
    };
    let kernels = match cfg.kernels.is_empty() {
        true => default_kernels(contention_only, &mut notes),
        false => cfg.kernels.clone(),
    };
    let plan = Plan {
        workloads: cfg.workloads.clone(),
        platforms: platforms.iter().map(|p| p.name().to_owned()).collect(),
        kernels: kernels.iter().map(|k| k.name()).collect(),
        duration_secs: cfg.duration.as_secs_f64(),
        runs: cfg.runs,
        stress: cfg.stress,
        memory_limit: cfg.memory_limit,
    };
    if start_or_resume(&cfg.output, &plan, cfg.fresh)? {
        events(StudyEvent::Resuming(&cfg.output));
    }

    let cells = cells(&plan.workloads, &platforms, &kernels, &mut notes);
    let to_stress = cfg.stress.map_or(vec![], |settings| cells_to_stress(&cells, settings, guest::kvm_usable(), &mut notes));
    let total = (cells.len() * cfg.runs as usize + to_stress.len()) as u64;
    let mut done = 0;

    for kernel in kernels.iter().filter(|k| cells.iter().any(|c| c.kernel == **k)).filter_map(|k| k.column_suffix()) {
        notes.push(format!(
            "columns @{kernel}: Debian's {kernel} kernel booted under qemu ({}), acquire mode; their rates are of the emulated \
             machine, comparable within those columns",
            guest::default_accel()
        ));
    }
    let mut traces = Vec::new();
    let mut preparing: Option<std::thread::JoinHandle<()>> = None;
    'record: for (i, cell) in recording_order(&cells) {
        if cell.kernel != StudyKernel::Running && preparing.is_none() {
            preparing = Some(prepare_resolution_beside_the_guest(cfg.kernel_src.as_deref(), &kernels));
        }
        for run in 1..=cfg.runs {
            if stop.load(Ordering::Relaxed) {
                break 'record;
            }
            let path = cfg.output.join("traces").join(format!("{}.run{run}.trace", cell.id()));
            events(StudyEvent::Step { done, total, doing: &format!("recording {} on {}, run {run}", cell.workload, cell.column()) });
            let recorded = match cell.kernel {
                StudyKernel::Running => record_step(cfg, running_mode, &cell.workload, cell.platform, &path, stop)?,
                StudyKernel::Debian(kernel) => guest_record_step(cfg, cell, kernel, &path)?
                    .map_err(|why| {
                        notes.push(format!(
                            "{} on {}, run {run}, not recorded (run the study again to retry): {why}",
                            cell.workload,
                            cell.column()
                        ))
                    })
                    .ok(),
            };
            if let Some(trace) = recorded {
                notes.extend(failed_instances(&trace.meta.workloads, &cell.workload, &cell.column()));
                notes.extend(lost_events(&trace.meta.counters, &cell.workload, &cell.column()));
                traces.push((i, path, trace));
            }
            done += 1;
        }
    }
    // Back in the cells' order, which the report's columns follow.
    traces.sort_by_key(|(i, ..)| *i);
    let mut traces: Vec<(PathBuf, Trace)> = traces.into_iter().map(|(_, path, trace)| (path, trace)).collect();
    if let Some(preparing) = preparing {
        if !preparing.is_finished() {
            events(StudyEvent::Step { done, total, doing: "waiting for the kernel sources and debug info being prepared" });
        }
        let _ = preparing.join();
    }

    for kernel in recorded_guest_kernels(&kernels, &traces) {
        fetch_guest_debug_info(kernel, &mut notes, |doing| events(StudyEvent::Step { done, total, doing }));
    }
    events(StudyEvent::Step { done, total, doing: "resolving call sites against the kernel source" });
    let guest_kernels = match cfg.kernel_src {
        Some(_) => vec![],
        None => recorded_guest_kernels(&kernels, &traces),
    };
    let progress = |doing: &str| events(StudyEvent::Step { done, total, doing });
    resolve_traces(cfg.kernel_src.as_deref(), &guest_kernels, &mut traces, &mut notes, progress)?;
    let traces: Vec<Trace> = traces.into_iter().map(|(_, t)| t).collect();

    let mut stress_results = Vec::new();
    if let Some(settings) = cfg.stress {
        for &cell in &to_stress {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let doing = format!(
                "stress: {} on {}, {} trasher(s) in {} windows, {} run(s)",
                cell.workload,
                cell.column(),
                settings.trashers,
                humantime::format_duration(settings.window),
                settings.runs
            );
            events(StudyEvent::Step { done, total, doing: &doing });
            let stressed = match cell.kernel {
                StudyKernel::Running => stress_step(cfg, settings, cell, stop, |warning| events(StudyEvent::Warning(warning)))?,
                StudyKernel::Debian(kernel) => guest_stress_step(cfg, settings, cell, kernel)?
                    .map_err(|why| {
                        notes.push(format!(
                            "stress: {} on {} not measured (run the study again to retry): {why}",
                            cell.workload,
                            cell.column()
                        ))
                    })
                    .ok(),
            };
            match stressed {
                // Never dropped unsaid: under emulation a worker may report too seldom to measure.
                Some(result) if result.series.first().is_none_or(|s| s.levels.is_empty()) => notes.push(format!(
                    "stress: {} on {} not measured ({}){}",
                    cell.workload,
                    cell.column(),
                    stress::NOT_MEASURED,
                    result.notes.iter().map(|n| format!("; {n}")).collect::<String>()
                )),
                Some(result) => {
                    let lost = result.series.iter().flat_map(|s| s.lost_runs(result.runs));
                    notes.extend(lost.map(|why| format!("stress: {} on {}: {why}", cell.workload, cell.column())));
                    stress_results.push((cell.clone(), result))
                }
                None => {}
            }
            done += 1;
        }
    }

    let complete = !stop.load(Ordering::Relaxed);
    if !complete {
        notes.push("interrupted: the report covers the steps that finished; run the same command to resume".into());
    }
    write_report(&cfg.output, &plan, notes, &traces, &stress_results, complete)
}

/// The cells in the order they are recorded, with their places: those in
/// the running kernel first, then those in guest kernels, beside which
/// [`prepare_resolution_beside_the_guest`] works.
fn recording_order(cells: &[StudyCell]) -> impl Iterator<Item = (usize, &StudyCell)> {
    let in_guest = |c: &StudyCell| c.kernel != StudyKernel::Running;
    let running = cells.iter().enumerate().filter(move |(_, c)| !in_guest(c));
    running.chain(cells.iter().enumerate().filter(move |(_, c)| in_guest(c)))
}

/// Makes ready, on a thread of low priority, what resolving the traces will
/// need: each guest kernel's debug info and Debian source, and the source
/// nearest the running kernel. Started with the guest's recordings: under
/// single-threaded emulation they leave a core idle, where this takes a
/// minute or two on a fresh machine, and nothing measured on the host runs
/// meanwhile. Whatever fails here is met again, and reported, by the
/// resolution; what both fetch, each waits for the other to finish (the
/// cache's locks).
fn prepare_resolution_beside_the_guest(kernel_src: Option<&Path>, kernels: &[StudyKernel]) -> std::thread::JoinHandle<()> {
    let guest_kernels: Vec<DebianKernel> = kernels.iter().filter_map(|k| k.guest()).collect();
    let mut sources = match kernel_src {
        Some(_) => vec![],
        None => guest_kernels.clone(),
    };
    if kernel_src.is_none() && kernels.contains(&StudyKernel::Running) {
        let nearest = crate::resolve::debian_source_for(&lockscope_proc::procfs::kernel_release());
        sources.extend(Some(nearest).filter(|k| !sources.contains(k)));
    }
    std::thread::spawn(move || {
        // Per thread on Linux, and inherited by the tools it runs (tar, make, dpkg-deb).
        // SAFETY: setpriority(2) on this thread's own id; failure only leaves the priority as it was.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10) };
        for kernel in guest_kernels {
            fetch_guest_debug_info(kernel, &mut vec![], |_| {});
        }
        for kernel in sources {
            let _ = crate::resolve::ready_debian_source(kernel, &mut |_: &str| {});
        }
    })
}

/// The cells the stress experiment measures: unless `settings` asks for
/// all, those that do not run under emulation, with a note naming the
/// columns left out. Under TCG a slowdown is set by the emulator more than
/// by the kernel's locks, and each cell costs 30-60 s.
fn cells_to_stress<'a>(cells: &'a [StudyCell], settings: StressSettings, kvm: bool, notes: &mut Vec<String>) -> Vec<&'a StudyCell> {
    let (emulated, native): (Vec<&StudyCell>, Vec<&StudyCell>) = cells.iter().partition(|c| c.emulated(kvm));
    if settings.emulated || emulated.is_empty() {
        return cells.iter().collect();
    }
    let mut columns: Vec<String> = vec![];
    for column in emulated.iter().map(|c| c.column()) {
        if !columns.contains(&column) {
            columns.push(column);
        }
    }
    notes.push(format!(
        "stress: not run on {}, which run under qemu's software emulation here (no hardware virtualization): a slowdown \
         there is set by the emulator more than by the kernel's locks (--stress-emulated runs them)",
        columns.join(", ")
    ));
    native
}

/// The kernels a study runs in when none are asked for: this one, and, where
/// `auto` found it allows contention mode only (no fentry, no kprobes: this
/// machine's), Debian's 6.1 too, the paper's kernel, booted under qemu,
/// where acquire mode counts every acquisition as the paper did.
pub fn default_kernels(contention_only: bool, notes: &mut Vec<String>) -> Vec<StudyKernel> {
    let running = vec![StudyKernel::Running];
    if !contention_only {
        return running;
    }
    let paper = DebianKernel::V6_1;
    let series = paper.series();
    if guest::qemu_version().is_none() {
        notes.push(format!(
            "acquire mode in Debian's {series} kernel (--kernel {paper}) needs qemu-system-x86_64: apt-get install qemu-system-x86"
        ));
        return running;
    }
    notes.push(format!(
        "Debian's {series} kernel added, under qemu (--kernel running,{paper}), for acquire mode: every acquisition \
         counted there, as the paper measured"
    ));
    vec![StudyKernel::Running, StudyKernel::Debian(paper)]
}

/// Whether `mode` is `auto` and the running kernel, found by loading
/// programs, allows contention mode only.
fn auto_finds_contention_only(mode: ModeRequest) -> bool {
    mode == ModeRequest::Auto && contention_only(&probe_hooks())
}

/// Whether contention mode's hooks load and acquire mode's do not. (Without
/// privileges none loads: the recording's own error says so.)
fn contention_only(hooks: &[HookStatus]) -> bool {
    let allows = |acquire: bool| hooks.iter().any(|h| h.available && h.hook.acquires() == acquire);
    allows(false) && !allows(true)
}

/// Each workload on each platform, in each kernel (where a guest kernel
/// studies the host platform only); a note for the rest.
fn cells(workloads: &[String], platforms: &[PlatformKind], kernels: &[StudyKernel], notes: &mut Vec<String>) -> Vec<StudyCell> {
    let mut cells = vec![];
    for w in workloads {
        for &kernel in kernels {
            for &platform in platforms {
                if kernel == StudyKernel::Running || platform == PlatformKind::Host {
                    cells.push(StudyCell { workload: w.clone(), platform, kernel });
                }
            }
        }
    }
    let others: Vec<&str> = platforms.iter().filter(|&&p| p != PlatformKind::Host).map(|p| p.name()).collect();
    for suffix in kernels.iter().filter_map(|k| k.column_suffix()).filter(|_| !others.is_empty()) {
        notes.push(format!("@{suffix}: {} not studied; in a guest kernel only the host platform is", others.join(", ")));
    }
    cells
}

/// The platforms asked for (which must be usable), or every usable one.
fn choose_platforms(asked: &[PlatformKind], env: &Env, notes: &mut Vec<String>) -> Result<Vec<PlatformKind>, StudyError> {
    if !asked.is_empty() {
        for &k in asked {
            k.ensure_usable(env)?;
        }
        return Ok(asked.to_vec());
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

/// Refuses to mix two different studies in one directory; true when it
/// resumes one.
fn start_or_resume(out: &Path, plan: &Plan, fresh: bool) -> Result<bool, StudyError> {
    let manifest = out.join("study.json");
    let mut resumed = false;
    if fresh {
        for dir in ["traces", "stress"] {
            let _ = std::fs::remove_dir_all(out.join(dir));
        }
    } else if let Ok(text) = std::fs::read_to_string(&manifest) {
        let earlier: Plan = serde_json::from_str(&text).map_err(|source| StudyError::Manifest { path: manifest.clone(), source })?;
        if &earlier != plan {
            let earlier = serde_json::to_string(&earlier).expect("a plan serializes");
            return Err(StudyError::DifferentStudy { dir: out.to_owned(), earlier });
        }
        resumed = true;
    }
    std::fs::create_dir_all(out.join("traces")).map_err(io(format!("creating {}", out.display())))?;
    let text = serde_json::to_string_pretty(plan).expect("a plan serializes");
    std::fs::write(&manifest, text).map_err(io(format!("writing {}", manifest.display())))?;
    Ok(resumed)
}

/// Records one run (or reads it back from an earlier study); None when interrupted.
fn record_step(
    cfg: &StudyConfig,
    mode: ModeRequest,
    name: &str,
    platform: PlatformKind,
    path: &Path,
    stop: &Arc<AtomicBool>,
) -> Result<Option<Trace>, StudyError> {
    if let Ok(trace) = read_trace(path) {
        return Ok(Some(trace));
    }
    let mut command = shlex::split(workload(name)?.command).expect("the study's commands are well-formed");
    command.extend(["--duration".into(), format!("{}ms", cfg.duration.as_millis())]);
    // As in the stress cells: both instances work on an ext4 made for this
    // recording, so what they share is what they do there, not what ran on
    // the work directory before them; removed once the recording ends.
    let private_fs = ScratchFs::create("record", &cfg.env.work_root.join(format!("record-{}", std::process::id())), PRIVATE_FS_MIB)?;
    // As the paper: each instance pinned to a core of its own.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let spec = |instance: &str, cpu: usize| WorkloadSpec {
        name: instance.to_owned(),
        target: Target::Placed(PlacedWorkload { platform, workload: command.clone(), user_root: None }),
        placement: Placement { cpus: Some(vec![cpu % cpus]), memory_limit: cfg.memory_limit, output: Output::Discard },
    };
    let plan = RecordPlan {
        options: RecordOptions { mode, ..RecordOptions::default() },
        workloads: vec![spec("a", 0), spec("b", 1)],
        // The instances end the recording; this only bounds a stuck one.
        duration: Some(cfg.duration * 3 + Duration::from_secs(120)),
        stop: Arc::clone(stop),
        env: Env { work_root: private_fs.path().to_owned(), ..cfg.env.clone() },
    };
    let mut trace =
        crate::record::record(&plan, |_| {}).map_err(|source| StudyError::Record { workload: name.to_owned(), platform, source })?;
    if trace.meta.end_reason == EndReason::Interrupted {
        return Ok(None); // redone on resume
    }
    trace.meta.label = Some(name.to_owned());
    write_trace(path, &trace, true)?;
    Ok(Some(trace))
}

/// Records one run in a Debian kernel under qemu (or reads it back from an
/// earlier study): `lockscope record` in acquire mode inside the guest, the
/// host platform's instances on the guest's ext4 disk. A guest that fails or
/// hangs fails only this step: Err says why, with the console's last lines.
/// A guest recording keeps the stack of one acquisition in this many, after
/// each lock's first few: counts per lock stay exact (the paper's numbers),
/// and the stack walk, most of an acquisition's cost, is made about half as
/// often in all (BENCHMARKS.md), so the workloads run less slowed.
const GUEST_STACK_SAMPLE: &str = "64";

/// Room for a guest recording's records, four times `record`'s default: in
/// acquire mode each of the thousands of inodes and dentries a file
/// workload touches is a lock of its own, and at the default the file
/// workloads lost up to 29% of their events to a full map.
const GUEST_MAX_RECORDS: &str = "1048576";

fn guest_record_step(cfg: &StudyConfig, cell: &StudyCell, kernel: DebianKernel, path: &Path) -> Result<Result<Trace, String>, StudyError> {
    if let Ok(trace) = read_trace(path) {
        return Ok(Ok(trace));
    }
    let w = workload(&cell.workload)?;
    let command = w.command;
    let instance = |name: &str| format!("{name}=host:{command} --duration {}ms", cfg.duration.as_millis());
    let out_dir = cfg.output.join("guest").join(cell.id());
    let mut guest = study_guest(w, &out_dir);
    let instances = instances_dir(&guest);
    let bound = format!("{}s", (cfg.duration * 3 + Duration::from_secs(120)).as_secs());
    let record = [
        "lockscope",
        "record",
        "--mode",
        "acquire",
        "--pin",
        "--work-dir",
        &instances,
        "--label",
        &cell.workload,
        "--duration",
        &bound,
        "--stack-sample",
        GUEST_STACK_SAMPLE,
        "--max-records",
        GUEST_MAX_RECORDS,
        "-o",
        "/out/trace",
        "--workload",
        &instance("a"),
        "--workload",
        &instance("b"),
    ];
    set_command(&mut guest, &record);
    guest.kernel = kernel;
    guest.timeout = cfg.guest_timeout.unwrap_or_else(|| default_guest_timeout(cfg.duration));
    if let Err(why) = run_in_guest(&guest, &cfg.env.lockscope) {
        return Ok(Err(why));
    }
    let mut trace = read_trace(&out_dir.join("trace"))?;
    for w in &mut trace.meta.workloads {
        if let Selector::Platform { platform, .. } = &mut w.selector {
            *platform = cell.column();
        }
    }
    trace.meta.notes.push(format!("recorded in Debian's {} kernel under qemu ({})", trace.meta.kernel_release, guest.accel));
    write_trace(path, &trace, true)?;
    let _ = std::fs::remove_dir_all(&out_dir);
    Ok(Ok(trace))
}

/// Whether a workload needs the host's programs in a guest: all but
/// lockscope's own microbenchmarks.
fn needs_host_system(w: &StudyWorkload) -> bool {
    w.group != Group::Micro
}

/// A guest for a study's step on `w`, given the host's programs where the
/// workload needs them ([`GuestConfig::host_system`]); its command is set
/// by [`set_command`].
fn study_guest(w: &StudyWorkload, out_dir: &Path) -> GuestConfig {
    let mut guest = GuestConfig::new("", out_dir);
    guest.host_system = needs_host_system(w);
    guest
}

/// Where a study's instances work in the guest: on its disk.
fn instances_dir(guest: &GuestConfig) -> String {
    format!("{}/instances", guest.disk_dir())
}

fn set_command(guest: &mut GuestConfig, argv: &[&str]) {
    guest.command = shlex::try_join(argv.iter().copied()).expect("no NUL in the study's commands");
}

/// Runs a lockscope command in a guest (its /out in a fresh
/// `guest.out_dir`); Err says why it failed, with the console's last lines.
fn run_in_guest(guest: &GuestConfig, lockscope: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(&guest.out_dir);
    let outcome = guest::run(guest, lockscope).map_err(|e| e.to_string())?;
    match outcome.exit_code {
        0 => Ok(()),
        status => {
            Err(format!("`{}` exited with status {status} in the guest; last console lines:\n{}", guest.command, outcome.console_tail()))
        }
    }
}

/// How long a guest kernel's recording of `duration` may take: booting,
/// attaching, reading the maps and writing the trace take minutes under
/// emulation.
pub fn default_guest_timeout(duration: Duration) -> Duration {
    duration * 3 + Duration::from_secs(900)
}

/// Fetches Debian's debug info for a guest kernel (once), so its call
/// sites resolve at their lines; without it they resolve by function.
fn fetch_guest_debug_info(kernel: DebianKernel, notes: &mut Vec<String>, mut progress: impl FnMut(&str)) {
    let cache = guest::default_cache_dir();
    let fetched = guest::GuestKernel::fetch(&cache, kernel).and_then(|kernel| {
        if guest::GuestDebugInfo::cached(&cache, &kernel.release).is_none() {
            progress(&format!("fetching Debian's debug info for {} (about 1 GB, once)", kernel.release));
        }
        guest::GuestDebugInfo::fetch(&cache, &kernel)
    });
    if let Err(e) = fetched {
        notes.push(format!("{kernel}'s call sites located by function, not by line: its debug info could not be fetched: {e}"));
    }
}

/// A note for each instance that did not end well: its locks cover only the
/// time it ran, which skews the comparison.
fn failed_instances(instances: &[lockscope_trace::Workload], workload: &str, column: &str) -> Vec<String> {
    instances
        .iter()
        .filter_map(|i| Some((i, i.exit.as_deref()?)))
        .filter(|(_, exit)| *exit != "exit status 0")
        .map(|(i, exit)| format!("{workload} on {column}: instance {} ended after {:.1} s: {exit}", i.name, i.run_time_secs()))
        .collect()
}

/// A note for a recording that lost events of its workloads: its counts
/// are low by that share, which the comparison cannot see.
fn lost_events(counters: &Counters, workload: &str, column: &str) -> Option<String> {
    let lost = counters.lost();
    (lost > 0).then(|| {
        let share = match 100.0 * lost as f64 / counters.events.max(lost) as f64 {
            tiny if tiny < 0.1 => "under 0.1%".to_owned(),
            share => format!("{share:.1}%"),
        };
        format!("{workload} on {column}: {lost} events of its workloads lost ({share} of them; the trace's counters say where), so its counts are low by that share")
    })
}

/// The Debian kernels among a study's kernels that something was recorded in.
fn recorded_guest_kernels(kernels: &[StudyKernel], traces: &[(PathBuf, Trace)]) -> Vec<DebianKernel> {
    let recorded = |kernel: DebianKernel| traces.iter().any(|(_, t)| DebianKernel::of_release(&t.meta.kernel_release) == Some(kernel));
    kernels.iter().filter_map(|k| k.guest()).filter(|&kernel| recorded(kernel)).collect()
}

/// Where a cell's stress experiment is written.
fn stress_dir(out: &Path, cell: &StudyCell) -> PathBuf {
    out.join("stress").join(cell.id())
}

/// A stress experiment the study ran before, read back.
fn earlier_stress(dir: &Path) -> Option<StressResult> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("stress.json")).ok()?).ok()
}

/// Runs one stress experiment, recording the worker and its trashers so the
/// score of the pair the experiment measured is known (or reads it back);
/// None when interrupted.
fn stress_step(
    cfg: &StudyConfig,
    settings: StressSettings,
    cell: &StudyCell,
    stop: &AtomicBool,
    warn: impl FnOnce(&str),
) -> Result<Option<StressResult>, StudyError> {
    let dir = stress_dir(&cfg.output, cell);
    if let Some(result) = earlier_stress(&dir) {
        return Ok(Some(result));
    }
    let (name, platform) = (&cell.workload, cell.platform);
    let stress_cfg = settings.config(workload(name)?, platform);
    let failed = |source| StudyError::Stress { workload: name.to_owned(), platform, source };
    let (result, trace) = stress::run_recorded(&stress_cfg, &cfg.env, stop, |_| {}).map_err(failed)?;
    if !result.complete {
        return Ok(None);
    }
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    write_trace(&dir.join(stress::TRACE_FILE), &trace, true)?;
    if let Some(warning) = stress::write_outputs(&result, &dir).map_err(failed)? {
        warn(&warning);
    }
    Ok(Some(result))
}

/// Runs one stress experiment in a Debian kernel under qemu (or reads it
/// back): `lockscope stress` on the guest's host platform, nothing recorded.
/// With no trampolines attached, emulation may give each vCPU a host thread
/// of its own, so worker and trasher run at once, as on hardware. A guest
/// that fails or hangs fails only this step: Err says why.
fn guest_stress_step(
    cfg: &StudyConfig,
    settings: StressSettings,
    cell: &StudyCell,
    kernel: DebianKernel,
) -> Result<Result<StressResult, String>, StudyError> {
    let dir = stress_dir(&cfg.output, cell);
    if let Some(result) = earlier_stress(&dir) {
        return Ok(Ok(result));
    }
    let w = workload(&cell.workload)?;
    let stress_cfg = settings.config(w, PlatformKind::Host);
    let duration = |d: Duration| format!("{}ms", d.as_millis());
    let (trashers, cycles, runs) = (stress_cfg.trashers.to_string(), stress_cfg.cycles.to_string(), stress_cfg.runs.to_string());
    let (window, warmup, sample) = (duration(stress_cfg.window), duration(stress_cfg.warmup), duration(stress_cfg.sample_every));
    let out_dir = cfg.output.join("guest").join(format!("stress-{}", cell.id()));
    let mut guest = study_guest(w, &out_dir);
    let instances = instances_dir(&guest);
    // The guest's disk is an ext4 made for this boot (so private already),
    // and the guest has no mkfs to make another.
    let mut stress = vec![
        "lockscope",
        "stress",
        "--platform",
        "host",
        "--fs",
        "work-dir",
        "--work-dir",
        &instances,
        "--worker",
        w.command,
        "--trasher",
        w.trasher,
        "--trashers",
        &trashers,
        "--window",
        &window,
        "--cycles",
        &cycles,
        "--runs",
        &runs,
        "--warmup",
        &warmup,
        "--sample",
        &sample,
        "-o",
        "/out/stress",
    ];
    if settings.control {
        stress.extend(["--control", CONTROL]);
    }
    set_command(&mut guest, &stress);
    guest.kernel = kernel;
    guest.accel = guest::parallel_accel().into();
    guest.extra_files = vec![PathBuf::from(crate::figure::FONT)];
    guest.timeout = cfg.guest_timeout.unwrap_or_else(|| default_guest_timeout(stress_cfg.run_length() * stress_cfg.runs));
    if let Err(why) = run_in_guest(&guest, &cfg.env.lockscope) {
        return Ok(Err(why));
    }
    let Some(result) = earlier_stress(&out_dir.join("stress")) else {
        return Ok(Err(format!("the guest wrote no stress.json in {}", out_dir.display())));
    };
    std::fs::create_dir_all(dir.parent().expect("a stress directory has a parent")).map_err(io("creating the stress directory"))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(out_dir.join("stress"), &dir).map_err(io(format!("moving the guest's stress results to {}", dir.display())))?;
    let _ = std::fs::remove_dir_all(&out_dir);
    Ok(Ok(result))
}

fn write_report(
    out: &Path,
    plan: &Plan,
    mut notes: Vec<String>,
    traces: &[Trace],
    stress_results: &[(StudyCell, StressResult)],
    complete: bool,
) -> Result<StudyOutcome, StudyError> {
    let options = lockscope_analysis::Options { top_sites: 3, include_interrupt: false };
    let comparison = compare::compare_traces(traces, &options);

    if let Some(t) = traces.first() {
        notes.insert(
            0,
            format!("kernel {} · mode {} via {} · {} recordings", t.meta.kernel_release, t.meta.mode, t.meta.hook, traces.len()),
        );
    }
    let figures: Vec<(StudyKernel, StressFigure)> = stress_results
        .iter()
        .filter_map(|(cell, r)| {
            let s = r.series.first()?;
            let last = s.levels.last()?;
            let figure = StressFigure {
                workload: cell.workload.clone(),
                platform: cell.column(),
                baseline: s.baseline,
                unit: s.unit.clone(),
                slowdown: last.slowdown,
                trashers: last.trashers,
                exposure: recorded_exposure(&stress_dir(out, cell), r),
                control: s.control.as_ref().map(|c| c.slowdown),
                beyond_control: s.control.as_ref().and_then(|c| c.beyond),
                svg: std::fs::read_to_string(stress_dir(out, cell).join("stress.svg")).unwrap_or_default(),
            };
            Some((cell.kernel, figure))
        })
        .collect();
    // Each kernel's experiments ranked on their own: modes and emulation differ.
    let correlations: Vec<Correlation> = StudyKernel::all()
        .flat_map(|kernel| {
            let mine: Vec<&StressFigure> = figures.iter().filter(|(k, _)| *k == kernel).map(|(_, f)| f).collect();
            correlate(&comparison, &mine, kernel)
        })
        .collect();
    let figures: Vec<StressFigure> = figures.into_iter().map(|(_, f)| f).collect();
    let report = Report { notes: &notes, plan, comparison: &comparison, stress: &figures, correlations: &correlations, complete };
    let write = |name: &str, text: String| {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))
    };
    write("report.json", serde_json::to_string_pretty(&report).expect("a report serializes"))?;
    write("table5.csv", lockscope_analysis::render::comparison_csv(&comparison))?;
    write("shared_locks.csv", lockscope_analysis::render::shared_locks_csv(&comparison))?;
    write("subsystems.csv", lockscope_analysis::render::subsystems_csv(&comparison))?;
    for table in ["table5.parquet", "shared_locks.parquet", "subsystems.parquet"] {
        let _ = std::fs::remove_file(out.join(table));
    }
    lockscope_analysis::export::write_parquet(&comparison, out)?;
    let page = html::Page {
        title: "lockscope study: kernel locks shared by co-located workloads",
        notes: &notes,
        comparison: &comparison,
        stress: &figures,
        correlations: &correlations,
    };
    write("report.html", html::render(&page))?;
    Ok(StudyOutcome { comparison, correlations, notes })
}

/// The worker's exposure to its trashers in a stress experiment's recorded
/// runs, if they were recorded.
fn recorded_exposure(dir: &Path, result: &StressResult) -> Option<f64> {
    stress::worker_exposure(result, &read_trace(&dir.join(stress::TRACE_FILE)).ok()?)
}

/// A measure of an experiment both recorded and stressed, by name: None
/// where it was not measured.
type Measure = (&'static str, fn(&compare::Cell, &StressFigure) -> Option<f64>);

/// Spearman's rho of each sharing measure against the measured slowdown:
/// each cell's median, whether or not its interval holds zero. A cell's
/// interval is over its runs (3 by default: Student's t of 4.3), so a cell
/// slower in every stressed window can still hold zero; ranking such cells
/// as 0 (as `calibrate` ranks its rungs, whose intervals come from one
/// run's many windows) made rho follow the intervals' width rather than the
/// slowdowns (BENCHMARKS.md). How many cells' intervals support a slowdown
/// is given beside.
fn correlate(c: &Comparison, figures: &[&StressFigure], kernel: StudyKernel) -> Vec<Correlation> {
    if figures.is_empty() {
        return vec![];
    }
    let measures: [Measure; 4] = [
        ("exposure to the trashers in the stress runs (100 - the pair's isolation score)", |_, f| f.exposure),
        ("exposure to the other instance (100 - isolation score)", |c, _| Some(c.exposure)),
        ("cumulative shared-lock rate", |c, _| Some(c.cumulative_rate)),
        ("shared-lock count", |c, _| Some(c.shared_mean)),
    ];
    // The experiments both compared and stressed.
    let measured: Vec<(&compare::Cell, &StressFigure)> =
        figures.iter().filter_map(|f| c.cell(&f.workload, &f.platform).map(|cell| (cell, *f))).collect();
    let rank = |(name, measure): &Measure, against: Against| {
        let slowdown = |f: &StressFigure| match against {
            Against::Slowdown => Some(f.slowdown),
            Against::BeyondControl => f.beyond_control,
        };
        let both = |(cell, f): &&(&compare::Cell, &StressFigure)| Some((measure(cell, f)?, slowdown(f)?));
        let pairs: Vec<(f64, f64)> = measured.iter().filter_map(|p| both(&p)).map(|(m, s)| (m, s.slowdown)).collect();
        let with_slowdown = measured.iter().filter_map(|p| both(&p)).filter(|(_, s)| s.interference && s.slowdown > 0.0).count();
        let rho = spearman(&pairs);
        let rho_ci = rho.and_then(|r| spearman_interval(r, pairs.len()));
        Correlation { measure: (*name).into(), against, kernel: kernel.name(), rho, rho_ci, experiments: pairs.len(), with_slowdown }
    };
    let mut correlations: Vec<Correlation> = measures
        .iter()
        .filter(|(_, measure)| measured.iter().any(|(cell, f)| measure(cell, f).is_some()))
        .map(|m| rank(m, Against::Slowdown))
        .collect();
    // The score against what the trashers cost beyond the lock-free control.
    let (_, score) = measures[0];
    if measured.iter().any(|(cell, f)| score(cell, f).is_some() && f.beyond_control.is_some()) {
        correlations.push(rank(&measures[0], Against::BeyondControl));
    }
    correlations
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockscope_bpf::Hook;
    use lockscope_trace::Selector;

    #[test]
    fn instances_that_failed_or_were_killed_are_noted() {
        let instance = |name: &str, exit: Option<&str>| lockscope_trace::Workload {
            id: 1,
            name: name.into(),
            selector: Selector::Platform { platform: "runc".into(), workload: "mem".into() },
            pids: vec![],
            started_ns: None,
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
            failed_instances(&instances, "mem-1m", "runc"),
            ["mem-1m on runc: instance b ended after 1.5 s: exit status 1: --size must be at least 1 byte"]
        );
    }

    #[test]
    fn a_recording_that_lost_events_is_noted_with_their_share() {
        let mut counters = Counters { events: 1000, recursion_misses: 500, ..Counters::default() };
        assert_eq!(lost_events(&counters, "file-list", "host@6.1"), None, "skipped runs of lockscope's own are not the workloads' events");
        counters.map_full = 150;
        let note = lost_events(&counters, "file-list", "host@6.1").expect("a note");
        assert!(note.starts_with("file-list on host@6.1: 150 events") && note.contains("(15.0% of them"), "{note}");
        (counters.events, counters.map_full) = (100_000, 1);
        assert!(lost_events(&counters, "file-list", "host@6.1").unwrap().contains("(under 0.1% of them"));
    }

    #[test]
    fn every_study_workload_parses_and_unknown_ones_list_the_known() {
        for w in &WORKLOADS {
            assert!(shlex::split(w.command).is_some_and(|a| !a.is_empty()), "{}", w.name);
            assert!(shlex::split(w.trasher).is_some_and(|a| !a.is_empty()), "{}", w.name);
        }
        let err = workload("bogus").unwrap_err().to_string();
        assert!(err.contains("mem-8k, mem-1m, file-list, file-create, file-delete, image-processing"), "{err}");
        assert!(err.contains("the groups micro, serverless, cloud and all"), "{err}");
    }

    #[test]
    fn groups_expand_to_their_workloads_once_each_in_order() {
        let expand = |names: &[&str]| expand_workloads(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>());
        assert_eq!(expand(&["micro"]).unwrap(), ["mem-8k", "mem-1m", "file-list", "file-create", "file-delete"]);
        assert_eq!(
            expand(&["file-create", "serverless", "lr-training"]).unwrap(),
            ["file-create", "image-processing", "video-processing", "face-detection", "lr-training", "cnn", "rnn"]
        );
        assert_eq!(expand(&["all"]).unwrap().len(), WORKLOADS.len());
        assert!(matches!(expand(&["micro", "bogus"]), Err(StudyError::UnknownWorkload(_))));
        let feedsim = expand(&["feedsim"]).unwrap_err().to_string();
        assert!(feedsim.starts_with("feedsim cannot be studied here: DCPerf's Feedsim is packaged nowhere"), "{feedsim}");
        assert_eq!(not_available_notes(&expand(&["micro", "serverless"]).unwrap()).count(), 0);
        let cloud: Vec<String> = not_available_notes(&expand(&["cloud"]).unwrap()).collect();
        assert_eq!(cloud, ["feedsim (cloud group) not studied: DCPerf's Feedsim is packaged nowhere this machine can reach (not in Debian, PyPI or crates.io)"]);
        let mut notes = vec![];
        let running = [StudyKernel::Running];
        let cells = cells(&["mem-8k".into(), "lr-training".into()], &[PlatformKind::Runc, PlatformKind::Microvm], &running, &mut notes);
        assert_eq!(cells.len(), 4, "{cells:?}");
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn a_guest_kernel_studies_the_host_platform_in_columns_of_its_own() {
        let mut notes = vec![];
        let kernels = [StudyKernel::Running, StudyKernel::Debian(DebianKernel::V6_1)];
        let cells = cells(&["mem-8k".into(), "cnn".into()], &[PlatformKind::Host, PlatformKind::Runc], &kernels, &mut notes);
        let ids: Vec<String> = cells.iter().map(StudyCell::id).collect();
        assert_eq!(ids, ["mem-8k@host", "mem-8k@runc", "mem-8k@host@6.1", "cnn@host", "cnn@runc", "cnn@host@6.1"]);
        assert_eq!(notes, ["@6.1: runc not studied; in a guest kernel only the host platform is"]);
        assert_eq!(StudyKernel::parse("debian-6.1").unwrap(), StudyKernel::Debian(DebianKernel::V6_1));
        assert_eq!(StudyKernel::parse("debian-6.12").unwrap(), StudyKernel::Debian(DebianKernel::V6_12));
        let unknown = StudyKernel::parse("6.1").unwrap_err().to_string();
        assert_eq!(unknown, "unknown kernel \"6.1\"; a study runs in running, debian-6.1, debian-6.12");
        // Recorded with the guest's cells last, each keeping its place in the report.
        let order: Vec<(usize, String)> = recording_order(&cells).map(|(i, c)| (i, c.id())).collect();
        let ids = |places: &[usize]| places.iter().map(|&i| (i, cells[i].id())).collect::<Vec<_>>();
        assert_eq!(order, ids(&[0, 1, 3, 4, 2, 5]));
    }

    #[test]
    fn emulated_columns_are_stressed_only_when_asked_for_or_under_kvm() {
        let kernels = [StudyKernel::Running, StudyKernel::Debian(DebianKernel::V6_1)];
        let platforms = [PlatformKind::Host, PlatformKind::Microvm];
        let cells = cells(&["mem-8k".into(), "file-create".into()], &platforms, &kernels, &mut vec![]);
        let settings = StressSettings { window: Duration::from_secs(2), cycles: 1, trashers: 1, runs: 3, emulated: false, control: false };
        let stressed = |settings, kvm| {
            let mut notes = vec![];
            let ids: Vec<String> = cells_to_stress(&cells, settings, kvm, &mut notes).into_iter().map(StudyCell::id).collect();
            (ids, notes)
        };
        let (ids, notes) = stressed(settings, false);
        assert_eq!(ids, ["mem-8k@host", "file-create@host"]);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].starts_with("stress: not run on microvm, host@6.1, which run under qemu's software emulation"), "{notes:?}");
        for (settings, kvm) in [(StressSettings { emulated: true, ..settings }, false), (settings, true)] {
            let (ids, notes) = stressed(settings, kvm);
            assert_eq!(ids.len(), cells.len());
            assert!(notes.is_empty(), "{notes:?}");
        }
    }

    /// On the kernel these tests run on, found by loading programs (as root):
    /// where it refuses both acquire-mode hooks (as this machine's does), a
    /// study with no kernel asked for adds the paper's 6.1 guest, and says why.
    #[test]
    fn a_kernel_without_acquire_mode_adds_the_papers_kernel_by_default() {
        let status = |hook, available| HookStatus { hook, available, reason: None };
        let this_machine = [status(Hook::Fentry, false), status(Hook::Kprobe, false), status(Hook::TpBtf, true)];
        assert!(contention_only(&this_machine));
        assert!(!contention_only(&[status(Hook::Kprobe, true), status(Hook::TpBtf, true)]));
        assert!(!contention_only(&[status(Hook::TpBtf, false), status(Hook::Tracepoint, false)]), "no privileges");

        let mut notes = vec![];
        let found = auto_finds_contention_only(ModeRequest::Auto);
        assert_eq!(found, contention_only(&probe_hooks()));
        let kernels = default_kernels(found, &mut notes);
        if !found {
            assert_eq!(kernels, [StudyKernel::Running]);
            assert!(notes.is_empty(), "{notes:?}");
        } else {
            assert!(guest::qemu_version().is_some(), "qemu is installed where the tests run (.ci/run installs it)");
            assert_eq!(kernels, [StudyKernel::Running, StudyKernel::Debian(DebianKernel::V6_1)]);
            assert!(notes[0].contains("--kernel running,debian-6.1"), "{notes:?}");
        }
        assert!(!auto_finds_contention_only(ModeRequest::Contention), "asked for contention mode, kept to it: no guest added");
    }
}
