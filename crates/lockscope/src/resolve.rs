//! `lockscope resolve`: a trace's stacks resolved against the kernel source.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use lockscope_experiments::resolve::{version_mismatch, DebugInfoChoice, OtherVersion, ResolveProgress, TreeResolver};
use lockscope_trace::{read_trace, write_trace, Trace};

use crate::progress::spinner;
use crate::source::TreeArgs;

/// Resolve a trace's stacks against the kernel source: which code took each
/// lock, and which global or kernel object the lock is.
///
/// Each stack's call site (its first frame outside the lock implementation)
/// names a function; its acquisitions of the recorded lock kind are read with
/// clangd. When it has none (an inlined callee, a tail call) the functions it
/// calls are searched ("completed"). The result is the trace plus
/// sites.parquet (stack_id → file, line, scope, object, member, variable,
/// lock_type, subsystem, method, candidates, reason), which `report` and
/// `compare` use to name locks. Run `lockscope source prepare` first; the
/// source should be the traced kernel's (Debian's linux-source-6.1 for the
/// guest's 6.1 kernel). Against another version's source only what survives
/// a change of version is taken: each call site's subsystem, by its
/// function's name, and for a lock that nothing at run time named (a global
/// where kallsyms lists no data symbols, a page of its own) the one lock its
/// function takes there, shown as `css_set_lock (as in 6.12)` ("other_version").
///
/// With the kernel's debug info each call site's return address gives its
/// exact line, through inlined functions and lock wrappers ("line"). It is
/// found by itself for the trace's kernel release in /usr/lib/debug (Debian's
/// linux-image-*-dbg) and in the guest cache (`lockscope guest --debug-info`).
#[derive(clap::Args)]
pub struct Args {
    /// The trace to resolve.
    trace: PathBuf,
    /// Where to write the resolved trace.
    #[arg(short, long, value_name = "TRACE")]
    output: PathBuf,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    tree: TreeArgs,
    #[command(flatten)]
    debug: DebugArgs,
}

/// Where the traced kernel's debug info is.
#[derive(clap::Args)]
pub struct DebugArgs {
    /// The traced kernel's vmlinux with DWARF (e.g.
    /// /usr/lib/debug/boot/vmlinux-RELEASE) [default: found by release].
    #[arg(long, value_name = "FILE")]
    vmlinux: Option<PathBuf>,
    /// A directory with the modules' debug objects (NAME.ko), searched
    /// below; without it frames in modules are resolved by function.
    #[arg(long, value_name = "DIR", requires = "vmlinux")]
    modules: Option<PathBuf>,
    /// Resolve by function even where debug info is found.
    #[arg(long, conflicts_with = "vmlinux")]
    no_debug_info: bool,
}

impl DebugArgs {
    fn choice(&self) -> DebugInfoChoice {
        DebugInfoChoice { vmlinux: self.vmlinux.clone(), modules: self.modules.clone(), disabled: self.no_debug_info }
    }
}

pub fn run(args: Args) -> Result<()> {
    let mut trace = read_trace(&args.trace).with_context(|| format!("reading {}", args.trace.display()))?;
    if args.output.exists() && !args.force {
        bail!("{} exists; pass --force to replace it", args.output.display());
    }
    match version_mismatch(&trace, &args.tree.root()) {
        Some(warning) => as_other_version(&mut trace, &args.tree.root(), &warning)?,
        None => {
            let bar = spinner("{spinner} {msg}");
            let shown = |p: ResolveProgress| match p {
                ResolveProgress::DebugInfo(vmlinux) => eprintln!("call sites located with the debug info in {}", vmlinux.display()),
                ResolveProgress::LoadingIndex(active) => bar.set_message(format!("loading clangd's index {}", active.join(", "))),
                ResolveProgress::Stack { done, total, function } => bar.set_message(format!("resolving stack {done}/{total} {function}")),
            };
            let mut resolver = TreeResolver::open(&args.tree.tree(), shown)?;
            let resolved = resolver.resolve(&mut trace, &args.debug.choice(), shown);
            resolver.close();
            resolved?;
            bar.finish_and_clear();
        }
    }
    summarize(&trace);
    write_trace(&args.output, &trace, args.force)?;
    Ok(())
}

/// Against another version's source (`warning` says which): its answers
/// would be about other code, so only what survives a change of version is
/// taken from it.
fn as_other_version(trace: &mut Trace, root: &std::path::Path, warning: &str) -> Result<()> {
    eprintln!("lockscope: {warning}; call sites are placed in subsystems by function name, and locks nothing at run time named are inferred from what those functions take there");
    let mut notes = vec![];
    let mut source = OtherVersion::open(root, &mut notes).context("indexing the source's functions")?;
    notes.iter().for_each(|n| eprintln!("lockscope: {n}"));
    let done = source.resolve(&mut [trace]);
    source.close();
    Ok(done?)
}

/// Stacks and acquisitions resolved, by how.
fn summarize(trace: &Trace) {
    let method: std::collections::HashMap<i32, &str> = trace.sites.iter().map(|s| (s.stack_id, s.method.name())).collect();
    let mut acquisitions: std::collections::BTreeMap<&str, u64> = Default::default();
    for r in &trace.records {
        *acquisitions.entry(method.get(&r.stack_id).copied().unwrap_or("no stack")).or_default() += r.count;
    }
    let total: u64 = acquisitions.values().sum();
    eprintln!("{} stacks resolved:", trace.sites.len());
    for (how, n) in acquisitions {
        eprintln!("  {how:<10} {n:>10} acquisitions ({:.1}%)", 100.0 * n as f64 / total.max(1) as f64);
    }
    // The unresolved sites that weigh most, with why.
    let mut unresolved: std::collections::HashMap<&str, (u64, &str)> = Default::default();
    let site: std::collections::HashMap<i32, &lockscope_trace::StackSite> = trace.sites.iter().map(|s| (s.stack_id, s)).collect();
    for r in &trace.records {
        if let Some(s) = site.get(&r.stack_id).filter(|s| s.method == lockscope_trace::SiteMethod::Unresolved) {
            let entry = unresolved.entry(s.function.as_str()).or_insert((0, s.reason.as_deref().unwrap_or("")));
            entry.0 += r.count;
        }
    }
    let mut top: Vec<_> = unresolved.into_iter().collect();
    top.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
    for (function, (n, why)) in top.into_iter().take(5) {
        eprintln!("  unresolved {function}: {n} acquisitions: {why}");
    }
}
