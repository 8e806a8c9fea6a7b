//! `lockscope workload`: the built-in workloads, runnable anywhere lockscope is.

use std::path::PathBuf;
use std::time::Duration;

use lockscope_workloads::apps::{run_to_end, App};
use lockscope_workloads::file_ops::{FileOp, FileOps};
use lockscope_workloads::mem::{parse_size, MemChurn};
use lockscope_workloads::meter::Line;
use lockscope_workloads::trasher::{Target, Trasher};
use lockscope_workloads::{file_churn::FileChurn, pipe::PipeContention, Budget};

/// Run a built-in workload; prints its throughput as one JSON line.
#[derive(clap::Subcommand)]
pub enum Workload {
    /// Create FILES small files in DIR, delete them, repeat (file-system metadata).
    FileChurn {
        /// Directory to churn in (created if missing); give each instance its own.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1000)]
        files: u32,
        /// Bytes written to each file.
        #[arg(long, default_value_t = 0)]
        size: usize,
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// List a directory of FILES files, over and over (paper: 50,000 entries).
    FileList {
        #[command(flatten)]
        set: FileSet,
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// Create FILES files of SIZE bytes, timed; then, round after round, replace each (delete untimed,
    /// create timed), so the directory neither grows nor drains (paper: 50,000 of 4 KiB).
    FileCreate {
        #[command(flatten)]
        set: FileSet,
        #[arg(long, default_value_t = 4096)]
        size: usize,
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// Create FILES files untimed; then, round after round, delete each (timed) and create it
    /// again (untimed), so the directory neither grows nor drains; one thread.
    FileDelete {
        #[command(flatten)]
        set: FileSet,
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// Stress one kernel subsystem with frequent system calls, beside a worker.
    Trasher {
        #[arg(long, value_enum, default_value = "mixed")]
        target: TrasherTarget,
        /// Scratch directory for the fs target (give each trasher its own).
        #[arg(long, default_value = "trash")]
        dir: PathBuf,
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// mmap chunks of SIZE until TOTAL is mapped, touch every page, unmap, repeat (page allocator).
    Mem {
        /// Bytes per mmap (8k, 1m, ...).
        #[arg(long, value_parser = parse_size, default_value = "8k")]
        size: u64,
        /// Bytes mapped before all are unmapped.
        #[arg(long, value_parser = parse_size, default_value = "64m")]
        total: u64,
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// WRITERS threads write one pipe while a thread drains it (a private mutex).
    Pipe {
        #[arg(long, default_value_t = 2)]
        writers: u32,
        /// Bytes per write.
        #[arg(long, default_value_t = 64)]
        chunk: usize,
        /// Write and drain this FIFO (made if missing) instead of a pipe of
        /// its own: workloads given the same path share one pipe and its lock.
        #[arg(long, value_name = "PATH")]
        fifo: Option<PathBuf>,
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// Pillow: an image (generated) flipped, rotated, filtered, turned grey and
    /// resized, each result saved (paper Table 6; needs python3-pil).
    ImageProcessing {
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// OpenCV: a clip (generated) decoded, each frame turned grey, encoded
    /// again (paper Table 6; needs python3-opencv).
    VideoProcessing {
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// OpenCV's Haar face cascade over every frame of a clip (generated)
    /// (paper Table 6; needs python3-opencv and opencv-data).
    FaceDetection {
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// scikit-learn: logistic regression trained on review text (generated),
    /// TF-IDF features, the model saved (paper Table 6; needs python3-sklearn).
    LrTraining {
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// PyTorch: SqueezeNet 1.1 (torchvision, weights randomly initialised:
    /// none can be fetched) classifying an image (generated) (paper Table 6;
    /// needs python3-torchvision).
    Cnn {
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// PyTorch: a character-level LSTM (weights randomly initialised)
    /// generating words letter by letter (paper Table 6; needs python3-torch).
    Rnn {
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// ffmpeg encoding a clip (generated) to AV1 with SVT-AV1, as DCPerf does
    /// (paper Table 7; needs ffmpeg).
    VideoTranscode {
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// memcached and a client over loopback TCP, 90% gets and 10% sets of
    /// 1 KiB values, the cache warmed first (paper Table 7; needs memcached).
    DataCaching {
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// data-caching without the warm-up: gets miss and the client sets what
    /// it missed, so the cache fills as the run goes.
    DataCachingCold {
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// PageRank on Apache Spark in local mode over a graph (generated) of
    /// 10,000 pages, one iteration per operation (paper Table 7; needs
    /// default-jre-headless and pyspark from PyPI).
    GraphAnalytics {
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// Any program, run to its end: lockscope notes how it ended, as for the
    /// built-in workloads. On a platform: `--workload a='runc:-- python3 app.py'`.
    Command {
        /// The program and its arguments (after `--`).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "PROGRAM [ARGS]")]
        argv: Vec<String>,
    },
}

/// The directory and file count of the file-metadata workloads.
#[derive(clap::Args)]
pub struct FileSet {
    /// The workload's own directory (created; must be empty unless
    /// --shared). Relative to the working directory, which each platform
    /// instance has to itself.
    #[arg(long, default_value = "data")]
    dir: PathBuf,
    #[arg(long, default_value_t = 10_000)]
    files: u32,
    /// DIR may be shared with other workloads: this one's files are named by
    /// its process id, and only they are touched.
    #[arg(long)]
    shared: bool,
    /// Work PERCENT of every 100 ms and idle the rest: the same load,
    /// lighter in proportion (the calibration's half-time trasher).
    #[arg(long, value_name = "PERCENT", default_value_t = 100)]
    duty: u32,
}

impl FileSet {
    fn ops(&self, op: FileOp, file_size: usize) -> FileOps<'_> {
        FileOps { op, dir: &self.dir, files: self.files, file_size, shared: self.shared, duty: self.duty }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum TrasherTarget {
    Fs,
    Mm,
    Mixed,
    /// Computation only, at idle priority: no kernel lock, no CPU time anything else wants (a control).
    Cpu,
    /// Memory traffic only, as much as mm's page zeroing, with no system call: mm without its kernel locks (a control).
    Memory,
}

#[derive(clap::Args)]
pub struct BudgetArgs {
    /// Run this long (e.g. 10s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s", conflicts_with = "rounds")]
    duration: Duration,
    /// Run this many rounds instead (file workloads: passes over FILES; pipe:
    /// writes per writer; mem: passes over TOTAL; trasher: system-call rounds).
    #[arg(long)]
    rounds: Option<u64>,
    /// Also print the throughput of every interval this long (e.g. 1s), one
    /// JSON line each ({"kind":"interval",...}), before the total
    /// ({"kind":"total",...}). Not for pipe, whose writers share one count.
    #[arg(long, value_parser = humantime::parse_duration)]
    report_every: Option<Duration>,
}

impl BudgetArgs {
    fn budget(&self) -> Budget {
        self.rounds.map_or(Budget::Time(self.duration), Budget::Rounds)
    }
}

pub fn run(w: Workload) -> anyhow::Result<()> {
    let result = match w {
        Workload::FileChurn { dir, files, size, budget } => {
            FileChurn { dir: &dir, files, file_size: size }.run(budget.budget(), budget.report_every)?
        }
        Workload::Pipe { writers, chunk, fifo, budget } => PipeContention { writers, chunk, fifo: fifo.as_deref() }.run(budget.budget())?,
        Workload::FileList { set, budget } => set.ops(FileOp::List, 0).run(budget.budget(), budget.report_every)?,
        Workload::FileCreate { set, size, budget } => set.ops(FileOp::Create, size).run(budget.budget(), budget.report_every)?,
        Workload::FileDelete { set, budget } => set.ops(FileOp::Delete, 0).run(budget.budget(), budget.report_every)?,
        Workload::Trasher { target, dir, budget } => {
            let target = match target {
                TrasherTarget::Fs => Target::Fs,
                TrasherTarget::Mm => Target::Mm,
                TrasherTarget::Mixed => Target::Mixed,
                TrasherTarget::Cpu => Target::Cpu,
                TrasherTarget::Memory => Target::Memory,
            };
            std::fs::create_dir_all(&dir)?;
            Trasher { target, dir: &dir }.run(budget.budget(), budget.report_every)?
        }
        Workload::Mem { size, total, budget } => MemChurn { chunk: size as usize, total }.run(budget.budget(), budget.report_every)?,
        // These print their own lines.
        Workload::ImageProcessing { budget } => return Ok(App::ImageProcessing.run(budget.budget(), budget.report_every)?),
        Workload::VideoProcessing { budget } => return Ok(App::VideoProcessing.run(budget.budget(), budget.report_every)?),
        Workload::FaceDetection { budget } => return Ok(App::FaceDetection.run(budget.budget(), budget.report_every)?),
        Workload::LrTraining { budget } => return Ok(App::LrTraining.run(budget.budget(), budget.report_every)?),
        Workload::Cnn { budget } => return Ok(App::Cnn.run(budget.budget(), budget.report_every)?),
        Workload::Rnn { budget } => return Ok(App::Rnn.run(budget.budget(), budget.report_every)?),
        Workload::VideoTranscode { budget } => return Ok(App::VideoTranscode.run(budget.budget(), budget.report_every)?),
        Workload::DataCaching { budget } => return Ok(App::DataCaching.run(budget.budget(), budget.report_every)?),
        Workload::DataCachingCold { budget } => return Ok(App::DataCachingCold.run(budget.budget(), budget.report_every)?),
        Workload::GraphAnalytics { budget } => return Ok(App::GraphAnalytics.run(budget.budget(), budget.report_every)?),
        Workload::Command { argv } => return Ok(run_to_end(std::process::Command::new(&argv[0]).args(&argv[1..]), &argv[0])?),
    };
    println!("{}", serde_json::to_string(&Line::Total(result))?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_application_is_a_workload_subcommand_of_its_name() {
        let cli = crate::Cli::command();
        let workload = cli.find_subcommand("workload").unwrap();
        for app in lockscope_workloads::apps::App::ALL {
            assert!(workload.find_subcommand(app.name()).is_some(), "{}", app.name());
        }
        assert!(workload.find_subcommand(lockscope_platform::PROGRAM_WORKLOAD).is_some(), "what `PLATFORM:-- PROGRAM` runs");
    }
}
