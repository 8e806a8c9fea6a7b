//! Calibration: does the isolation score rank interference as it happens?
//!
//! A built-in ladder of worker/trasher pairs whose interference is known in
//! order, from two workloads creating files in one directory down to a
//! trasher that only computes. Each rung is one recorded stress experiment
//! (one trasher, host), so its score and its slowdown come from the same
//! run; Spearman's rho between exposure (100 − score) and slowdown says how
//! well the score predicts.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use lockscope_analysis::stats::{spearman, spearman_p, Slowdown};
use lockscope_platform::{Env, PlatformKind};

use crate::scratch_fs::ScratchFs;
use crate::stress::{self, StressConfig, StressError, StressProgress};

/// One pair of the ladder: what the worker and its trasher run.
#[derive(Clone, Debug)]
pub struct Rung {
    pub name: &'static str,
    pub description: &'static str,
    pub worker: Vec<String>,
    pub trasher: Vec<String>,
}

/// The ladder, most interference first. `shared` is a directory both
/// workloads of the first two rungs create files in (the second's trasher at
/// half time: the same meetings, half as many, on any machine); `elsewhere`
/// one on another file system for the fourth. Every other directory is the
/// workload's own, on the file system of the experiment's work directory.
pub fn ladder(files: u32, shared: &Path, elsewhere: &Path) -> Vec<Rung> {
    // Empty files: metadata is what the rungs share or do not, and dirty
    // data's periodic writeback would only add noise to every rung.
    let create = |extra: &[String]| -> Vec<String> {
        ["file-create", "--files", &files.to_string(), "--size", "0"].into_iter().map(String::from).chain(extra.iter().cloned()).collect()
    };
    let in_dir = |dir: &Path, shared: bool| {
        let mut args = vec!["--dir".to_owned(), dir.display().to_string()];
        args.extend(shared.then(|| "--shared".to_owned()));
        create(&args)
    };
    vec![
        Rung {
            name: "same-directory",
            description: "two workloads creating files in one directory",
            worker: in_dir(shared, true),
            trasher: in_dir(shared, true),
        },
        Rung {
            name: "same-directory-half-time",
            description: "the same, the trasher working half of every 100 ms",
            worker: in_dir(shared, true),
            trasher: [in_dir(shared, true), vec!["--duty".into(), "50".into()]].concat(),
        },
        Rung {
            name: "same-filesystem",
            description: "creating files in two directories of one file system",
            worker: create(&[]),
            trasher: create(&[]),
        },
        Rung {
            name: "other-filesystem",
            description: "creating files on two file systems",
            worker: create(&[]),
            trasher: in_dir(elsewhere, false),
        },
        Rung {
            name: "cpu-only",
            description: "creating files beside a trasher that only computes",
            worker: create(&[]),
            trasher: vec!["trasher".into(), "--target".into(), "cpu".into()],
        },
    ]
}

#[derive(Clone, Debug)]
pub struct CalibrateConfig {
    pub window: Duration,
    pub cycles: u32,
    pub sample_every: Duration,
    /// Files each file-create round makes.
    pub files: u32,
}

/// A rung's score and slowdown, measured in one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RungResult {
    pub name: String,
    pub description: String,
    /// 100 × (1 − exposure): the worker's isolation from its trasher.
    pub score: f64,
    /// The share of the worker's run time lost waiting on locks the trasher held.
    pub exposure: f64,
    /// The worker's slowdown with the trasher running: median over windows, with its interval.
    #[serde(flatten)]
    pub slowdown: Slowdown,
    /// The slowdown's interval again, as [low, high].
    pub ci: [f64; 2],
    /// Locks the worker and the trasher both took.
    pub shared_locks: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Calibration {
    pub rungs: Vec<RungResult>,
    /// Spearman's rho of exposure against the slowdown each rung supports
    /// (0 where its interval holds zero): 1 when the score ranks the rungs
    /// exactly as their slowdowns do.
    pub rho: Option<f64>,
    /// The chance of a rho this large from a random ordering of the rungs.
    pub rho_p: Option<f64>,
    /// What limited the runs on this machine.
    pub notes: Vec<String>,
    /// False when interrupted: the rungs hold what was measured.
    pub complete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("{rung}: {source}")]
    Stress { rung: String, source: StressError },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{rung}: the stress experiment measured no slowdown (too few windows)")]
    NoSlowdown { rung: String },
}

/// Runs the ladder on the host, one recorded stress experiment per rung.
/// `progress` hears the rung (index, name) and the stress experiment's progress.
pub fn run(
    cfg: &CalibrateConfig,
    env: &Env,
    stop: &AtomicBool,
    mut progress: impl FnMut(usize, &str, &StressProgress),
) -> Result<Calibration, CalibrateError> {
    let mut notes = vec![];
    let scratch = Scratch::new(env, &mut notes)?;
    let env = &Env { work_root: scratch.work.clone(), ..env.clone() };
    if same_file_system(&scratch.shared, &scratch.elsewhere) {
        notes.push(format!(
            "{} is on the same file system as the work directory: the other-filesystem rung is not what it says",
            scratch.elsewhere.display()
        ));
    }
    let mut rungs = vec![];
    let mut complete = true;
    for (i, rung) in ladder(cfg.files, &scratch.shared, &scratch.elsewhere).iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            complete = false;
            break;
        }
        let stress_cfg = StressConfig {
            platforms: vec![PlatformKind::Host],
            worker: rung.worker.clone(),
            trasher: rung.trasher.clone(),
            control: None,
            trashers: 1,
            window: cfg.window,
            cycles: cfg.cycles,
            warmup: cfg.window,
            sample_every: cfg.sample_every,
            runs: 1,
            // Each rung makes the file systems its pair runs on.
            private_fs: false,
        };
        let failed = |source| CalibrateError::Stress { rung: rung.name.into(), source };
        let (result, trace) = stress::run_recorded(&stress_cfg, env, stop, |p| progress(i, rung.name, p)).map_err(failed)?;
        if !result.complete {
            complete = false;
            break;
        }
        notes.extend(result.notes.iter().filter(|n| !notes.contains(n)).cloned().collect::<Vec<_>>());
        let level = result.series.first().and_then(|s| s.levels.first());
        let Some(slowdown) = level.map(|l| l.slowdown) else {
            return Err(CalibrateError::NoSlowdown { rung: rung.name.into() });
        };
        let analysis = lockscope_analysis::analyze(&trace, &lockscope_analysis::Options { top_sites: 1, include_interrupt: false });
        let exposure = stress::worker_exposures(&result, &analysis.exposures).first().copied().unwrap_or(0.0);
        rungs.push(RungResult {
            name: rung.name.into(),
            description: rung.description.into(),
            score: lockscope_analysis::score::isolation_score(exposure),
            exposure,
            slowdown,
            ci: [slowdown.ci_low, slowdown.ci_high],
            shared_locks: analysis.shared_locks,
        });
    }
    let pairs: Vec<(f64, f64)> = rungs.iter().map(|r| (r.exposure, r.slowdown.reported())).collect();
    let rho = spearman(&pairs);
    Ok(Calibration { rungs, rho, rho_p: spearman_p(&pairs), notes, complete })
}

/// Where the rungs work: two private ext4 file systems in memory where the
/// machine allows (quiet: nothing else writes to them), else the work
/// directory and /dev/shm. Removed when the calibration ends.
struct Scratch {
    /// The file system the workers create files on (their own directories).
    work: PathBuf,
    /// The one directory of the first two rungs.
    shared: PathBuf,
    /// The other file system's directory, for the fourth rung's trasher.
    elsewhere: PathBuf,
    /// Dropped after the directories above are removed.
    file_systems: Vec<ScratchFs>,
}

impl Scratch {
    fn new(env: &Env, notes: &mut Vec<String>) -> Result<Scratch, CalibrateError> {
        let id = std::process::id();
        let private = |name: &str| ScratchFs::create(name, &env.work_root.join(format!("calibrate-{id}-{name}")), 1024);
        let scratch = match private("a").and_then(|a| Ok(vec![a, private("b")?])) {
            Ok(file_systems) => Scratch {
                work: file_systems[0].path().join("work"),
                shared: file_systems[0].path().join("shared"),
                elsewhere: file_systems[1].path().join("trasher"),
                file_systems,
            },
            Err(e) => {
                notes.push(format!(
                    "no private file system ({e}): the rungs share the work directory's file system with whatever else writes to it"
                ));
                Scratch {
                    work: env.work_root.clone(),
                    shared: env.work_root.join(format!("calibrate-{id}-shared")),
                    elsewhere: PathBuf::from(format!("/dev/shm/lockscope-calibrate-{id}")),
                    file_systems: vec![],
                }
            }
        };
        for dir in [&scratch.shared, &scratch.elsewhere] {
            std::fs::create_dir_all(dir).map_err(|source| CalibrateError::Io { what: format!("creating {}", dir.display()), source })?;
        }
        Ok(scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for dir in [&self.shared, &self.elsewhere] {
            let _ = std::fs::remove_dir_all(dir);
        }
        if !self.file_systems.is_empty() {
            let _ = std::fs::remove_dir_all(&self.work);
        }
    }
}

fn same_file_system(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    matches!((std::fs::metadata(a), std::fs::metadata(b)), (Ok(x), Ok(y)) if x.dev() == y.dev())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_shares_less_at_each_rung() {
        let rungs = ladder(100, Path::new("/w/shared"), Path::new("/dev/shm/x"));
        let names: Vec<&str> = rungs.iter().map(|r| r.name).collect();
        assert_eq!(names, ["same-directory", "same-directory-half-time", "same-filesystem", "other-filesystem", "cpu-only"]);
        assert_eq!(rungs[0].worker.join(" "), "file-create --files 100 --size 0 --dir /w/shared --shared");
        assert_eq!(rungs[0].trasher, rungs[0].worker, "one directory for both");
        assert_eq!(rungs[1].worker, rungs[0].worker);
        assert_eq!(rungs[1].trasher.join(" "), "file-create --files 100 --size 0 --dir /w/shared --shared --duty 50");
        assert_eq!(rungs[3].trasher.join(" "), "file-create --files 100 --size 0 --dir /dev/shm/x");
        assert_eq!(rungs[4].trasher.join(" "), "trasher --target cpu");
    }
}
