//! `lockscope compare`: the paper's Table 5 for any set of traces.

use std::path::PathBuf;

use anyhow::Context;
use lockscope_analysis::compare;

use crate::Format;

/// Compare traces: rows are workloads, columns platforms, and each cell is
/// "shared lock count, averaged over runs (cumulative rate)", as the paper's
/// Table 5; then each cell's isolation score and the top shared locks.
///
/// A trace's workload is its `record --label` (else its command's name), its
/// platform that of `record --workload` (else host); traces with the same
/// workload and platform are runs of one experiment.
///
/// Example: lockscope compare study/traces/*.trace --format csv
#[derive(clap::Args)]
pub struct Args {
    /// Trace directories written by `lockscope record` (or `lockscope study`).
    #[arg(required = true)]
    traces: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Count acquisitions made in interrupt context.
    #[arg(long)]
    include_interrupt: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let options = lockscope_analysis::Options { top_sites: 3, include_interrupt: args.include_interrupt };
    let traces = args
        .traces
        .iter()
        .map(|path| lockscope_trace::read_trace(path).with_context(|| format!("reading {}", path.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let comparison = compare::compare_traces(&traces, &options);
    match args.format {
        Format::Table => print!("{}", lockscope_analysis::render::comparison_table(&comparison)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&comparison)?),
        Format::Csv => print!("{}", lockscope_analysis::render::comparison_csv(&comparison)),
    }
    Ok(())
}
