//! `lockscope workload`: the built-in workloads, runnable anywhere lockscope is.

use std::path::PathBuf;
use std::time::Duration;

use lockscope_workloads::mem::{parse_size, MemChurn};
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
        #[command(flatten)]
        budget: BudgetArgs,
    },
}

#[derive(clap::Args)]
pub struct BudgetArgs {
    /// Run this long (e.g. 10s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s", conflicts_with = "rounds")]
    duration: Duration,
    /// Run this many rounds instead (file-churn: create+delete passes; pipe:
    /// writes per writer; mem: passes over TOTAL).
    #[arg(long)]
    rounds: Option<u64>,
}

impl BudgetArgs {
    fn budget(&self) -> Budget {
        self.rounds.map_or(Budget::Time(self.duration), Budget::Rounds)
    }
}

pub fn run(w: Workload) -> anyhow::Result<()> {
    let result = match w {
        Workload::FileChurn { dir, files, size, budget } => {
            FileChurn { dir: &dir, files, file_size: size }.run(budget.budget())?
        }
        Workload::Pipe { writers, chunk, budget } => PipeContention { writers, chunk }.run(budget.budget())?,
        Workload::Mem { size, total, budget } => MemChurn { chunk: size as usize, total }.run(budget.budget())?,
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
