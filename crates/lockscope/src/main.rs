//! lockscope: measures how isolated co-located workloads are by the kernel
//! locks they acquire in common. This binary only parses arguments, shows
//! progress and wires the stages together; the work lives in the crates.

mod calibrate;
mod compare;
mod doctor;
mod guest;
mod platform_args;
mod progress;
mod record;
mod report;
mod resolve;
mod source;
mod stress;
mod study;
mod workload;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "lockscope",
    version,
    about = "Measure how isolated co-located workloads are, by the kernel locks they share",
    long_about = "lockscope records the kernel locks that workloads acquire (eBPF, aggregated in the kernel), \
finds the locks two or more workloads acquire in common (shared) and those only one acquires (private), \
and reports how often each is taken and from where in the kernel.\n\n\
A typical session:\n  \
lockscope doctor                       # what this machine allows\n  \
lockscope study -o study               # the paper's experiment on every platform here → study/report.html\n  \
lockscope record --workload a='runc:file-create' --workload b='runc:file-create' -o c.trace\n  \
lockscope report c.trace               # shared and private locks"
)]
struct Cli {
    /// Log more (-v: info, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Calibrate(calibrate::Args),
    Compare(compare::Args),
    Doctor(doctor::Args),
    Guest(guest::Args),
    Record(record::Args),
    Report(report::Args),
    Resolve(resolve::Args),
    #[command(subcommand)]
    Source(source::Source),
    Stress(stress::Args),
    Study(study::Args),
    #[command(subcommand)]
    Workload(workload::Workload),
}

/// A flag set by Ctrl-C (or SIGTERM): long commands stop, clean up and keep what they have.
pub fn stop_on_signals() -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, std::sync::Arc::clone(&stop))?;
    }
    Ok(stop)
}

/// Output format of commands that print tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

fn main() {
    // Output piped into `head` ends quietly, as other command-line tools do.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        if e.use_stderr() {
            lockscope_proc::exit_note::write(e.exit_code(), &e.to_string());
        }
        e.exit()
    });
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Calibrate(args) => calibrate::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Guest(args) => guest::run(args),
        Command::Record(args) => record::run(args),
        Command::Report(args) => report::run(args),
        Command::Resolve(args) => resolve::run(args),
        Command::Source(s) => source::run(s),
        Command::Stress(args) => stress::run(args),
        Command::Study(args) => study::run(args),
        Command::Workload(w) => workload::run(w),
    };
    if let Err(e) = result {
        eprintln!("lockscope: error: {e:#}");
        lockscope_proc::exit_note::write(1, &format!("{e:#}"));
        std::process::exit(1);
    }
    lockscope_proc::exit_note::write(0, "");
}
