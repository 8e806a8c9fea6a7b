//! A trace's stacks resolved against the kernel source: with the traced
//! kernel's debug info where it is found (each call site at its line), and
//! clangd over the source tree (the lock each call site takes).

use std::path::{Path, PathBuf};

use lockscope_source::functions::FunctionIndex;
use lockscope_source::lines::{DebugInfo, LinesError};
use lockscope_source::resolve::Learned;
use lockscope_source::tree::COMPILE_COMMANDS;
use lockscope_source::{Clangd, ClangdError, SourceTree};
use lockscope_trace::{write_trace, DebianKernel, Trace, TraceError};

/// Where the traced kernel's debug info is: given, found by release, or not used.
#[derive(Clone, Debug, Default)]
pub struct DebugInfoChoice {
    /// The traced kernel's vmlinux with DWARF; default: found by release.
    pub vmlinux: Option<PathBuf>,
    /// A directory of the modules' debug objects (`<name>.ko`).
    pub modules: Option<PathBuf>,
    /// Resolve by function even where debug info is found.
    pub disabled: bool,
}

impl DebugInfoChoice {
    /// The vmlinux and modules directory to use for kernel `release`: the
    /// given ones, else Debian's -dbg package, else the guest cache's.
    pub fn find(&self, release: &str) -> Option<(PathBuf, Option<PathBuf>)> {
        if self.disabled {
            return None;
        }
        if let Some(vmlinux) = &self.vmlinux {
            return Some((vmlinux.clone(), self.modules.clone()));
        }
        let installed = (
            PathBuf::from(format!("/usr/lib/debug/boot/vmlinux-{release}")),
            PathBuf::from(format!("/usr/lib/debug/lib/modules/{release}")),
        );
        let guest = lockscope_platform::guest::GuestDebugInfo::cached(&lockscope_platform::guest::default_cache_dir(), release)
            .map(|d| (d.vmlinux, d.modules));
        [Some(installed), guest].into_iter().flatten().find(|(v, _)| v.is_file()).map(|(v, m)| (v, m.is_dir().then_some(m)))
    }
}

/// What resolution is doing, for progress displays.
pub enum ResolveProgress<'a> {
    /// Call sites are being placed at their lines with this vmlinux's debug info.
    DebugInfo(&'a Path),
    /// clangd is loading its index (what it says it is doing).
    LoadingIndex(&'a [String]),
    /// Stack `done` of `total` is being resolved; it was taken in `function`.
    Stack { done: usize, total: usize, function: &'a str },
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    DebugInfo(#[from] LinesError),
    #[error(transparent)]
    Clangd(#[from] ClangdError),
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

/// clangd over one source tree, kept open while it resolves traces one after
/// another, with what it learned of the tree: the files their call sites
/// share are parsed once, and each call site is asked about once, not once
/// per trace (a minute each for a study's guest traces).
pub struct TreeResolver {
    clangd: Clangd,
    learned: Learned,
}

impl TreeResolver {
    pub fn open(tree: &SourceTree, mut progress: impl FnMut(ResolveProgress)) -> Result<TreeResolver, ResolveError> {
        Ok(TreeResolver { clangd: tree.open(|active| progress(ResolveProgress::LoadingIndex(active)))?, learned: Learned::default() })
    }

    /// The tree's root.
    pub fn root(&self) -> &Path {
        self.clangd.root()
    }

    /// Resolves the trace's stacks against the tree, adding its sites table
    /// and notes saying how.
    pub fn resolve(
        &mut self,
        trace: &mut Trace,
        debug: &DebugInfoChoice,
        mut progress: impl FnMut(ResolveProgress),
    ) -> Result<(), ResolveError> {
        let located = match debug.find(&trace.meta.kernel_release) {
            Some((vmlinux, modules)) => {
                progress(ResolveProgress::DebugInfo(&vmlinux));
                let mut info = DebugInfo::open(&vmlinux, modules.as_deref())?;
                let located = lockscope_source::stacks::locate_call_sites(&mut info, trace)?;
                trace.meta.notes.push(format!("call sites located with the debug info in {}", vmlinux.display()));
                located
            }
            None => Default::default(),
        };
        trace.sites =
            lockscope_source::stacks::resolve_stacks(&mut self.clangd, &mut self.learned, trace, &located, |done, total, function| {
                progress(ResolveProgress::Stack { done, total, function })
            })?;
        trace.meta.notes.push(format!("stacks resolved against the source at {}", self.root().display()));
        Ok(())
    }

    pub fn close(self) {
        self.clangd.shutdown();
    }
}

/// The kernel version of the source at `root` (`6.1`), from its Makefile.
fn source_version(root: &Path) -> Option<String> {
    let makefile = std::fs::read_to_string(root.join("Makefile")).ok()?;
    let field =
        |name: &str| makefile.lines().find_map(|l| l.strip_prefix(name)?.trim_start().strip_prefix('=').map(|v| v.trim().to_owned()));
    Some(format!("{}.{}", field("VERSION")?, field("PATCHLEVEL")?))
}

/// Why the trace's kernel is not the source's version, if it is not.
pub fn version_mismatch(trace: &Trace, root: &Path) -> Option<String> {
    let source = source_version(root)?;
    let traced = &trace.meta.kernel_release;
    (!lockscope_trace::release_in_series(traced, &source))
        .then(|| format!("the trace is from kernel {traced} but the source is {source}: functions may have moved or been renamed"))
}

/// The source of another kernel version than the traces', as far as it can
/// still tell about them: which subsystem each call site is in (by its
/// function's name), and which lock it took where run-time naming could not
/// say (a global without data symbols, a page of its own), from what the
/// function takes there.
pub struct OtherVersion {
    root: PathBuf,
    version: Option<String>,
    functions: FunctionIndex,
    /// clangd over the tree, where it is prepared (compile_commands.json).
    clangd: Option<Clangd>,
}

impl OtherVersion {
    /// The tree at `root` (extracted), with clangd over it where it is
    /// prepared; `notes` says what could not be used.
    pub fn open(root: &Path, notes: &mut Vec<String>) -> std::io::Result<OtherVersion> {
        let functions = FunctionIndex::load(root)?;
        let tree = SourceTree { kernel_src: Some(root.to_owned()), clangd: None };
        let clangd = tree.open(|_| {}).map_err(|e| notes.push(format!("locks not named from the source at {}: {e}", root.display())));
        Ok(OtherVersion { root: root.to_owned(), version: source_version(root), functions, clangd: clangd.ok() })
    }

    /// How many functions the tree defines.
    pub fn functions(&self) -> usize {
        self.functions.len()
    }

    /// Places the traces' call sites and names the locks run-time naming
    /// could not, as their sites; notes in each trace how.
    pub fn resolve(&mut self, traces: &mut [&mut Trace]) -> Result<(), ClangdError> {
        let root = self.root.display();
        for trace in traces.iter_mut() {
            trace.sites = lockscope_source::stacks::place_by_function_name(trace, &self.functions);
            trace.meta.notes.push(format!("call sites placed in subsystems by function name, from the source at {root}"));
        }
        let Some(clangd) = &mut self.clangd else { return Ok(()) };
        let named = lockscope_source::stacks::infer_unnamed_locks(clangd, &self.functions, traces)?;
        for (trace, named) in traces.iter_mut().zip(named).filter(|(_, n)| *n > 0) {
            trace.meta.sites_from = self.version.clone();
            trace.meta.notes.push(format!(
                "{named} call sites' locks named from what their functions take in the source at {root} \
                 (another kernel version: inferred), where nothing at run time named them"
            ));
        }
        Ok(())
    }

    pub fn close(self) {
        if let Some(clangd) = self.clangd {
            clangd.shutdown();
        }
    }
}

/// Debian's source of `kernel` extracted into lockscope's cache and
/// configured for clangd (no index), each step skipped when done before.
pub(crate) fn ready_debian_source(kernel: DebianKernel, progress: &mut impl FnMut(&str)) -> Result<(), ClangdError> {
    let root = lockscope_source::tree::debian_source_dir(kernel);
    let step = |step: &str| progress(&format!("{}: {step}", kernel.source_package()));
    let options = lockscope_source::tree::PrepareOptions::default();
    lockscope_source::clangd::ready_tree(&root, Some(kernel), &options, None, false, step).map(|_| ())
}

/// The Debian source a trace of kernel `release` is resolved against (when
/// no tree is given): its own series', else the nearest, else 6.1's.
pub(crate) fn debian_source_for(release: &str) -> DebianKernel {
    DebianKernel::nearest(release).unwrap_or(DebianKernel::V6_1)
}

/// A study's traces resolved against their own kernel's source where that
/// source is prepared and matches: `kernel_src`, else Debian's source of the
/// trace's kernel series (extracted and configured here for the
/// `guest_kernels` recorded in). The others get what survives a change of
/// version from the nearest source ([`OtherVersion`]). Traces are rewritten
/// with what was found.
pub fn resolve_traces(
    kernel_src: Option<&Path>,
    guest_kernels: &[DebianKernel],
    traces: &mut [(PathBuf, Trace)],
    notes: &mut Vec<String>,
    mut progress: impl FnMut(&str),
) -> Result<(), ResolveError> {
    // Extracted and configured here (a minute); clangd's index of it only
    // by `lockscope source prepare`, which can take an hour (6.12 on 2 cores).
    for &kernel in guest_kernels {
        let root = lockscope_source::tree::debian_source_dir(kernel);
        match ready_debian_source(kernel, &mut progress) {
            Err(e) => notes.push(format!("{kernel}'s source could not be prepared: {e}")),
            Ok(_) if !lockscope_source::tree::is_indexed(&root) => notes.push(format!(
                "{kernel}'s locks resolved without clangd's index of {}: each call site within its own file, a lock \
                 reached through a function defined elsewhere left unresolved; `lockscope source prepare --kernel {kernel}` \
                 builds the index",
                root.display()
            )),
            Ok(_) => {}
        }
    }
    // The given tree, else the Debian source of the trace's kernel or nearest to it.
    let debian_of = |trace: &Trace| debian_source_for(&trace.meta.kernel_release);
    let root_of = |trace: &Trace| match kernel_src {
        Some(root) => root.to_owned(),
        None => lockscope_source::tree::debian_source_dir(debian_of(trace)),
    };
    let mut unmatched: Vec<usize> = vec![];
    let mut why_nots: Vec<String> = vec![];
    let mut resolved_in: Vec<PathBuf> = vec![];
    let mut open: Option<TreeResolver> = None;
    for (i, (path, trace)) in traces.iter_mut().enumerate() {
        let root = root_of(trace);
        let release = &trace.meta.kernel_release;
        let why_not = match (kernel_src.is_none() && DebianKernel::of_release(release).is_none(), root.join(COMPILE_COMMANDS).is_file()) {
            (true, _) => Some(format!("no source of kernel {release} is at hand (lockscope fetches Debian's 6.1 and 6.12)")),
            (false, false) => Some(format!("no prepared kernel source at {} (lockscope source prepare)", root.display())),
            (false, true) => version_mismatch(trace, &root),
        };
        if let Some(why) = why_not {
            if !why_nots.contains(&why) {
                why_nots.push(why);
            }
            unmatched.push(i);
            continue;
        }
        if trace.sites.is_empty() {
            let mut shown = |p: ResolveProgress| match p {
                ResolveProgress::Stack { done, total, function } => progress(&format!("resolving stack {done}/{total} {function}")),
                ResolveProgress::LoadingIndex(_) => progress("loading clangd's index"),
                ResolveProgress::DebugInfo(_) => {}
            };
            if open.as_ref().is_none_or(|r| r.root() != root) {
                if let Some(other) = open.take() {
                    other.close();
                }
                open = Some(TreeResolver::open(&SourceTree { kernel_src: Some(root.clone()), clangd: None }, &mut shown)?);
            }
            open.as_mut().expect("opened above").resolve(trace, &DebugInfoChoice::default(), &mut shown)?;
            write_trace(path, trace, true)?;
        }
        if !resolved_in.contains(&root) {
            resolved_in.push(root);
        }
    }
    if let Some(resolver) = open {
        resolver.close();
    }
    notes.extend(resolved_in.iter().map(|root| format!("locks resolved against the kernel source at {}", root.display())));
    notes.extend(why_nots.into_iter().map(|why| format!("call sites not resolved at their lines: {why}")));
    // The others: what survives a change of version, from the same source.
    let mut by_root: Vec<(PathBuf, Option<DebianKernel>, Vec<usize>)> = vec![];
    for (i, (_, trace)) in traces.iter().enumerate() {
        if !unmatched.contains(&i) || !trace.sites.is_empty() {
            continue;
        }
        let (root, kernel) = (root_of(trace), kernel_src.is_none().then(|| debian_of(trace)));
        match by_root.iter_mut().find(|(r, ..)| *r == root) {
            Some((.., members)) => members.push(i),
            None => by_root.push((root, kernel, vec![i])),
        }
    }
    for (root, kernel, members) in by_root {
        if let Some(kernel) = kernel {
            // Debian's source package is installed by setup: extracted and
            // configured in a minute or two, no index needed.
            if let Err(e) = ready_debian_source(kernel, &mut progress) {
                notes.push(format!("{kernel}'s source could not be prepared: {e}"));
                if !lockscope_source::tree::is_kernel_tree(&root) {
                    notes.push("subsystems unknown".into());
                    continue;
                }
            }
        }
        progress(&format!("placing call sites with the source at {}", root.display()));
        let indexing = |source| ResolveError::Io { what: format!("indexing functions in {}", root.display()), source };
        let mut source = OtherVersion::open(&root, notes).map_err(indexing)?;
        notes.push(format!(
            "subsystems from the call sites' function names in the source at {} ({} functions)",
            root.display(),
            source.functions()
        ));
        let mut these: Vec<&mut (PathBuf, Trace)> =
            traces.iter_mut().enumerate().filter(|(i, _)| members.contains(i)).map(|(_, t)| t).collect();
        let done = source.resolve(&mut these.iter_mut().map(|(_, trace)| trace).collect::<Vec<_>>());
        source.close();
        if let Err(e) = done {
            notes.push(format!("locks not named from the source at {}: {e}", root.display()));
        }
        for (path, trace) in these {
            write_trace(path, trace, true)?;
        }
    }
    Ok(())
}
