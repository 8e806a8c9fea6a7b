//! `lockscope report`: shared and private locks of a trace.

use std::path::PathBuf;

use crate::Format;

/// Show a trace's shared locks (acquired by two or more workloads) and each
/// workload's private locks, with counts, access rates (acquisitions per
/// second of the workload's own run time), top call sites and every drop and
/// filter counter.
#[derive(clap::Args)]
pub struct Args {
    /// Trace directory written by `lockscope record`.
    trace: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Locks shown per section in the table; call sites kept per lock in JSON.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Count acquisitions made in interrupt context (recognised from the
    /// stack); left out by default as the interrupted workload did not cause them.
    #[arg(long)]
    include_interrupt: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let trace = lockscope_trace::read_trace(&args.trace)?;
    let options = lockscope_analysis::Options { top_sites: args.top, include_interrupt: args.include_interrupt };
    let analysis = lockscope_analysis::analyze(&trace, &options);
    match args.format {
        Format::Table => print!("{}", lockscope_analysis::render::table(&analysis, args.top)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&analysis)?),
        Format::Csv => print!("{}", lockscope_analysis::render::csv(&analysis)),
    }
    Ok(())
}
