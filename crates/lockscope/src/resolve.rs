//! `lockscope resolve`: a trace's stacks resolved against the kernel source.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use lockscope_source::lines::DebugInfo;
use lockscope_trace::{read_trace, write_trace, Trace};

use crate::progress::spinner;
use crate::source::{open_tree, TreeArgs};

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
/// guest's 6.1 kernel).
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
#[derive(clap::Args, Default)]
pub struct DebugArgs {
    /// The traced kernel's vmlinux with DWARF (e.g.
    /// /usr/lib/debug/boot/vmlinux-<release>) [default: found by release].
    #[arg(long, value_name = "FILE")]
    vmlinux: Option<PathBuf>,
    /// A directory with the modules' debug objects (<name>.ko), searched
    /// below; without it frames in modules are resolved by function.
    #[arg(long, value_name = "DIR", requires = "vmlinux")]
    modules: Option<PathBuf>,
    /// Resolve by function even where debug info is found.
    #[arg(long, conflicts_with = "vmlinux")]
    no_debug_info: bool,
}

impl DebugArgs {
    /// The vmlinux and modules directory to use for `release`, if any.
    fn find(&self, release: &str) -> Option<(PathBuf, Option<PathBuf>)> {
        if self.no_debug_info {
            return None;
        }
        if let Some(vmlinux) = &self.vmlinux {
            return Some((vmlinux.clone(), self.modules.clone()));
        }
        let installed = (
            PathBuf::from(format!("/usr/lib/debug/boot/vmlinux-{release}")),
            PathBuf::from(format!("/usr/lib/debug/lib/modules/{release}")),
        );
        let guest = lockscope_workloads::guest::GuestDebugInfo::cached(&lockscope_workloads::guest::default_cache_dir(), release)
            .map(|d| (d.vmlinux, d.modules));
        [Some(installed), guest].into_iter().flatten().find(|(v, _)| v.is_file()).map(|(v, m)| (v, m.is_dir().then_some(m)))
    }
}

pub fn run(args: Args) -> Result<()> {
    let mut trace = read_trace(&args.trace).with_context(|| format!("reading {}", args.trace.display()))?;
    if args.output.exists() && !args.force {
        bail!("{} exists; pass --force to replace it", args.output.display());
    }
    if let Some(warning) = version_mismatch(&trace, &args.tree.root()) {
        eprintln!("lockscope: warning: {warning}");
    }
    resolve_in_place(&mut trace, &args.tree, &args.debug)?;
    summarize(&trace);
    write_trace(&args.output, &trace, args.force)?;
    Ok(())
}

/// Resolves the trace's stacks against the tree, adding its sites table.
pub fn resolve_in_place(trace: &mut Trace, tree: &TreeArgs, debug: &DebugArgs) -> Result<()> {
    let located = match debug.find(&trace.meta.kernel_release) {
        Some((vmlinux, modules)) => {
            eprintln!("call sites located with the debug info in {}", vmlinux.display());
            let mut info = DebugInfo::open(&vmlinux, modules.as_deref())?;
            let located = lockscope_source::stacks::locate_call_sites(&mut info, trace)?;
            trace.meta.notes.push(format!("call sites located with the debug info in {}", vmlinux.display()));
            located
        }
        None => Default::default(),
    };
    let mut clangd = open_tree(tree)?;
    let bar = spinner("{spinner} resolving stack {pos}/{len} {msg}");
    let sites = lockscope_source::stacks::resolve_stacks(&mut clangd, trace, &located, |done, total, function| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(function.to_owned());
    });
    bar.finish_and_clear();
    clangd.shutdown();
    trace.sites = sites?;
    trace.meta.notes.push(format!("stacks resolved against the source at {}", tree.root().display()));
    Ok(())
}

/// Stacks and acquisitions resolved, by how.
fn summarize(trace: &Trace) {
    let method: std::collections::HashMap<i32, &str> = trace.sites.iter().map(|s| (s.stack_id, s.method.as_str())).collect();
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
        if let Some(s) = site.get(&r.stack_id).filter(|s| s.method == "unresolved") {
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

/// A warning when the trace's kernel is not the source's version.
pub fn version_mismatch(trace: &Trace, root: &Path) -> Option<String> {
    let makefile = std::fs::read_to_string(root.join("Makefile")).ok()?;
    let field = |name: &str| {
        makefile.lines().find_map(|l| l.strip_prefix(name)?.trim_start().strip_prefix('=').map(|v| v.trim().to_owned()))
    };
    let source = format!("{}.{}", field("VERSION")?, field("PATCHLEVEL")?);
    let traced = &trace.meta.kernel_release;
    let same = traced.starts_with(&format!("{source}.")) || traced.starts_with(&format!("{source}-"));
    (!same).then(|| format!("the trace is from kernel {traced} but the source is {source}: functions may have moved or been renamed"))
}
