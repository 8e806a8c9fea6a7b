//! A trace's stacks resolved against the kernel source: with the traced
//! kernel's debug info where it is found (each call site at its line), and
//! clangd over the source tree (the lock each call site takes).

use std::path::{Path, PathBuf};

use lockscope_source::functions::FunctionIndex;
use lockscope_source::lines::{DebugInfo, LinesError};
use lockscope_source::{Clangd, ClangdError, SourceTree};
use lockscope_trace::Trace;

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
}

/// Resolves the trace's stacks against the tree, adding its sites table and
/// notes saying how.
pub fn resolve_in_place(
    trace: &mut Trace,
    tree: &SourceTree,
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
    let mut clangd = tree.open(|active| progress(ResolveProgress::LoadingIndex(active)))?;
    let sites = lockscope_source::stacks::resolve_stacks(&mut clangd, trace, &located, |done, total, function| {
        progress(ResolveProgress::Stack { done, total, function })
    });
    clangd.shutdown();
    trace.sites = sites?;
    trace.meta.notes.push(format!("stacks resolved against the source at {}", tree.root().display()));
    Ok(())
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
