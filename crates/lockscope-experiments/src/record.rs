//! Recording workloads: each workload's target is set up before the probes
//! load (a command or a built-in workload on a platform, held before its
//! first instruction; a running process; a cgroup), handed to a recording
//! session, released, and watched until the recording ends: at a duration,
//! when every workload that can end has, or when `stop` is set. What was
//! started is stopped and removed on every path out.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lockscope_bpf::{Progress, RecordError, RecordOptions, Session, WorkloadId, MAX_WORKLOADS};
use lockscope_platform::attach::RunningContainer;
use lockscope_platform::{Env, HostInstance, Instance, InstanceSpec, Output, PlacedWorkload, PlatformError};
use lockscope_proc::procfs;
use lockscope_trace::{EndReason, Selector, Trace};

const TICK: Duration = Duration::from_millis(100);

/// What a workload is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A command lockscope launches on the host, followed from its first instruction.
    Command(Vec<String>),
    /// A built-in workload (`lockscope workload` arguments) or a program on a platform.
    Placed(PlacedWorkload),
    /// A running process and its descendants.
    Pid(u32),
    /// Every process of a cgroup.
    Cgroup(PathBuf),
    /// A container another runtime runs: every process of its cgroup.
    Container(RunningContainer),
}

impl Target {
    /// How the trace describes it.
    pub fn selector(&self) -> Selector {
        match self {
            Target::Command(argv) => Selector::Run { command: join(argv) },
            Target::Placed(p) => Selector::Platform { platform: p.platform.name().into(), workload: p.describe() },
            Target::Pid(pid) => Selector::Pid { pid: *pid },
            Target::Cgroup(path) => Selector::Cgroup { path: path.display().to_string() },
            Target::Container(c) => {
                Selector::Container { runtime: c.runtime.clone(), container: c.name.clone(), cgroup: c.cgroup.display().to_string() }
            }
        }
    }
}

/// Arguments as a shell would read them back.
pub fn join(args: &[String]) -> String {
    shlex::try_join(args.iter().map(String::as_str)).unwrap_or_else(|_| args.join(" "))
}

/// Where a workload lockscope starts runs: its CPUs, memory limit (bytes) and output.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    pub cpus: Option<Vec<usize>>,
    pub memory_limit: Option<u64>,
    /// Its standard output (lockscope's own by default).
    pub output: Output,
}

impl Placement {
    /// The instance to start for workload `name` running `workload` (built-in workload arguments).
    pub fn instance(&self, name: &str, workload: Vec<String>) -> InstanceSpec {
        InstanceSpec {
            name: name.to_owned(),
            workload,
            cpus: self.cpus.clone(),
            memory_limit: self.memory_limit,
            output: self.output,
            user_root: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    pub name: String,
    pub target: Target,
    /// Used by the targets lockscope starts (commands and built-in workloads).
    pub placement: Placement,
}

/// A recording: how, of what, for how long.
pub struct RecordPlan {
    pub options: RecordOptions,
    pub workloads: Vec<WorkloadSpec>,
    /// Ends the recording; without it, the recording ends when every command,
    /// built-in workload and process has exited (or at `stop`).
    pub duration: Option<Duration>,
    /// Set (e.g. by a Ctrl-C handler) to end the recording early.
    pub stop: Arc<AtomicBool>,
    /// Where built-in workloads are set up.
    pub env: Env,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("no workload given: name at least one with --run, --pid or --cgroup")]
    NoWorkloads,
    #[error("workload {name}: process {pid} does not exist")]
    NoSuchPid { name: String, pid: u32 },
    #[error("workload {name}: cannot run {program:?}")]
    Launch { name: String, program: String, source: std::io::Error },
    #[error("workload {name}: {source}")]
    Platform { name: String, source: PlatformError },
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// A target made ready before the probes load (so platform start-up is not recorded).
enum Prepared {
    /// Launched by lockscope and held; with the program it runs, for errors.
    Held(Box<dyn Instance>, String),
    Pid(u32),
    Cgroup(PathBuf),
}

/// How a workload's end is noticed.
enum Watch {
    Instance(Box<dyn Instance>),
    Pid(u32),
    /// A cgroup does not end on its own.
    Never,
}

/// Records the plan's workloads; `progress` is called every tick.
pub fn record(plan: &RecordPlan, mut progress: impl FnMut(&Progress)) -> Result<Trace, RecordingError> {
    validate(&plan.workloads)?;
    lockscope_bpf::check_privileges()?;
    let mut prepared = plan.workloads.iter().map(|spec| prepare(spec, &plan.env)).collect::<Result<Vec<_>, _>>()?;
    for (spec, target) in plan.workloads.iter().zip(&mut prepared) {
        if let Prepared::Held(instance, _) = target {
            instance.wait_ready().map_err(|source| RecordingError::Platform { name: spec.name.clone(), source })?;
        }
    }
    let mut trace = lockscope_bpf::record(&plan.options, |session| {
        let mut watched = Vec::new();
        for (spec, target) in plan.workloads.iter().zip(prepared) {
            watched.push(follow(session, spec, target)?);
        }
        let finite = watched.iter().all(|(_, w)| !matches!(w, Watch::Never));
        let reason = loop {
            for (id, w) in &mut watched {
                notice_end(session, *id, w);
            }
            let p = session.poll()?;
            progress(&p);
            if plan.stop.load(Ordering::Relaxed) {
                break EndReason::Interrupted;
            }
            if plan.duration.is_some_and(|d| p.elapsed >= d) {
                break EndReason::Duration;
            }
            if finite && p.running == 0 {
                break EndReason::WorkloadsExited;
            }
            std::thread::sleep(TICK);
        };
        // What lockscope launched stops before the probes go, so none of it
        // is inside a traced primitive while the kernel takes them down.
        for (id, w) in &mut watched {
            notice_end(session, *id, w);
            if let Watch::Instance(instance) = w {
                session.end(*id, None); // still running: its run time ends here
                instance.stop();
            }
        }
        Ok::<_, RecordingError>(reason)
    })?;
    name_locks(&mut trace);
    Ok(trace)
}

/// Names the trace's locks from where they live, through the BTF of this
/// kernel (the one just recorded) and its modules; a note says why not where it cannot.
pub fn name_locks(trace: &mut Trace) {
    match lockscope_naming::Btf::kernel() {
        Ok(btf) => lockscope_naming::name_trace(trace, &btf),
        Err(e) => trace.meta.notes.push(format!("locks not named at run time: {e}")),
    }
}

fn validate(specs: &[WorkloadSpec]) -> Result<(), RecordingError> {
    if specs.is_empty() {
        return Err(RecordingError::NoWorkloads);
    }
    if specs.len() > MAX_WORKLOADS {
        return Err(RecordError::TooManyWorkloads.into());
    }
    let mut names = std::collections::BTreeSet::new();
    match specs.iter().find(|w| !names.insert(&w.name)) {
        Some(twice) => Err(RecordError::DuplicateName(twice.name.clone()).into()),
        None => Ok(()),
    }
}

fn prepare(spec: &WorkloadSpec, env: &Env) -> Result<Prepared, RecordingError> {
    let name = spec.name.clone();
    Ok(match &spec.target {
        Target::Command(argv) => {
            let held = HostInstance::command(argv, &spec.placement.instance(&name, vec![]), None)
                .map_err(|e| launch_error(name, argv[0].clone(), e))?;
            Prepared::Held(Box::new(held), argv[0].clone())
        }
        Target::Placed(placed) => {
            let instance_spec =
                InstanceSpec { user_root: placed.user_root.clone(), ..spec.placement.instance(&name, placed.workload.clone()) };
            let instance = placed.platform.create(&instance_spec, env).map_err(|source| RecordingError::Platform { name, source })?;
            Prepared::Held(instance, format!("{}:{}", placed.platform, placed.describe()))
        }
        Target::Pid(pid) if !procfs::process_alive(*pid) => return Err(RecordingError::NoSuchPid { name, pid: *pid }),
        Target::Pid(pid) => Prepared::Pid(*pid),
        Target::Cgroup(path) | Target::Container(RunningContainer { cgroup: path, .. }) => {
            // Checked here too, so a bad path costs no loading.
            procfs::cgroup_target(path).map_err(|e| RecordError::NoSuchCgroup {
                name,
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            Prepared::Cgroup(path.clone())
        }
    })
}

/// Hands a prepared target to the session and, if held, lets it run.
fn follow(session: &mut Session<'_>, spec: &WorkloadSpec, target: Prepared) -> Result<(WorkloadId, Watch), RecordingError> {
    let selector = spec.target.selector();
    Ok(match target {
        Prepared::Held(mut instance, program) => {
            let id = session.follow_processes(&spec.name, selector, &instance.pids())?;
            session.restart_clock(id);
            instance.start().map_err(|e| launch_error(spec.name.clone(), program, e))?;
            (id, Watch::Instance(instance))
        }
        Prepared::Pid(pid) => (session.follow_processes(&spec.name, selector, &[pid])?, Watch::Pid(pid)),
        Prepared::Cgroup(path) => (session.follow_cgroup(&spec.name, selector, &path)?, Watch::Never),
    })
}

/// Tells the session when a workload has ended, and how.
fn notice_end(session: &mut Session<'_>, id: WorkloadId, watch: &mut Watch) {
    if session.has_ended(id) {
        return;
    }
    match watch {
        Watch::Instance(instance) => {
            if let Some(exit) = instance.try_wait() {
                session.end(id, Some(exit));
            }
        }
        Watch::Pid(pid) => {
            if !procfs::process_alive(*pid) {
                session.end(id, Some("exited".into()));
            }
        }
        Watch::Never => {}
    }
}

/// A platform failure while starting workload `name`: an I/O failure is a
/// failure to run `program`.
fn launch_error(name: String, program: String, e: PlatformError) -> RecordingError {
    match e {
        PlatformError::Io { source, .. } => RecordingError::Launch { name, program, source },
        source => RecordingError::Platform { name, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockscope_platform::PlatformKind;

    fn spec(name: &str) -> WorkloadSpec {
        WorkloadSpec { name: name.into(), target: Target::Pid(1), placement: Placement::default() }
    }

    #[test]
    fn workloads_are_checked_before_anything_starts() {
        assert!(matches!(validate(&[]), Err(RecordingError::NoWorkloads)));
        let twice = validate(&[spec("a"), spec("b"), spec("a")]).unwrap_err();
        assert_eq!(twice.to_string(), "workload name \"a\" is used twice; give each workload its own name");
        let many: Vec<WorkloadSpec> = (0..=MAX_WORKLOADS).map(|i| spec(&i.to_string())).collect();
        assert!(matches!(validate(&many), Err(RecordingError::Record(RecordError::TooManyWorkloads))));
        assert!(validate(&[spec("a"), spec("b")]).is_ok());
    }

    #[test]
    fn targets_describe_themselves_in_the_trace() {
        let builtin = Target::Placed(PlacedWorkload {
            platform: PlatformKind::Runc,
            workload: vec!["mem".into(), "--size".into(), "8k".into()],
            user_root: None,
        });
        assert_eq!(builtin.selector(), Selector::Platform { platform: "runc".into(), workload: "mem --size 8k".into() });
        let command = Target::Command(vec!["sh".into(), "-c".into(), "echo hi".into()]);
        assert_eq!(command.selector(), Selector::Run { command: "sh -c 'echo hi'".into() });
    }
}
