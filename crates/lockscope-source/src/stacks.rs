//! Stack resolution: each recorded kernel stack → the code that took the
//! lock → the lock itself.
//!
//! A stack's call site (its first frame outside the tracer and the lock
//! implementation) names a function. Its acquisitions of the recorded lock
//! kind are read from the source; when it has none, the stack was cut short
//! (the acquisition was inlined from a callee, or the call was a tail call)
//! and the functions it calls are searched too ("completed"). One distinct
//! lock resolves the stack; several are reported as candidates.
//!
//! With the kernel's debug info the call site's return address gives the very
//! line ("line"), through the functions inlined there; where that line is in a
//! lock wrapper that was handed its lock, its callers' lines are read until
//! one names the lock.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use lockscope_trace::frames::{call_site_index, is_lock_function};
use lockscope_trace::kallsyms::in_kernel_image;
use lockscope_trace::{LockKind, SiteMethod, Stack, StackSite, SymbolTable, Trace};

use crate::clangd::{Clangd, ClangdError};
use crate::lines::{in_tree, DebugInfo, Frame, InlinedAt, LinesError};
use crate::primitives::acquisition;
use crate::resolve::{Learned, Resolver, Scope, Site};
use crate::LockType;

/// How many frames from the call site outward are located: a lock wrapper's
/// callers name its lock.
const CALLERS_LOCATED: usize = 4;

/// Per stack, where its call site and the callers after it were, by the
/// debug info: one chain of inlined functions per frame, innermost first,
/// stopping at the first frame the debug info does not cover.
pub type Located = HashMap<i32, Vec<Vec<InlinedAt>>>;

/// The functions of a stack from its call site (the first frame outside the
/// lock implementation) outwards; None when every frame is lock code.
fn functions_from_call_site(symbols: &SymbolTable, stack: &Stack) -> Option<Vec<String>> {
    let frames = symbols.frames(&stack.frames);
    let at = call_site_index(&frames)?;
    Some(frames[at..].iter().map(source_name).collect())
}

/// Ids of the stacks the trace's records use.
fn used_stacks(trace: &Trace) -> BTreeSet<i32> {
    trace.records.iter().map(|r| r.stack_id).filter(|&id| id >= 0).collect()
}

/// Locates the call site and its first callers of every used stack with the
/// kernel's debug info.
pub fn locate_call_sites(debug: &mut DebugInfo, trace: &Trace) -> Result<Located, LinesError> {
    let symbols = SymbolTable::from_snapshot(trace.symbols.clone());
    let used = used_stacks(trace);
    let mut owners: Vec<(i32, usize)> = vec![];
    let mut frames: Vec<Frame> = vec![];
    for stack in trace.stacks.iter().filter(|s| used.contains(&s.id)) {
        let Some(site) = call_site_index(&symbols.frames(&stack.frames)) else { continue };
        for (depth, &address) in stack.frames.iter().skip(site).take(CALLERS_LOCATED).enumerate() {
            let Some((symbol, _)) = symbols.lookup(address) else { break };
            owners.push((stack.id, depth));
            frames.push(Frame { function: &symbol.name, function_start: symbol.addr, address, module: symbol.module.as_deref() });
        }
    }
    let chains = debug.locate(&frames)?;
    let mut located: Located = HashMap::new();
    for ((id, depth), chain) in owners.into_iter().zip(chains) {
        let found = located.entry(id).or_default();
        // Only an unbroken run of callers from the call site is of use.
        if let (true, Some(chain)) = (found.len() == depth, chain) {
            found.push(chain);
        }
    }
    Ok(located)
}

/// What the recorded addresses of a stack's locks are, by kallsyms.
enum Globals {
    /// All globals, with these names.
    Named(BTreeSet<String>),
    /// None is a global: heap or stack objects.
    NoneOfThem,
    Mixed,
}

/// A function's candidate locks, narrowed by what the addresses show; None
/// when there is no candidate or the addresses rule every one out.
fn narrow(choice: &Choice, globals: Option<Globals>) -> Option<Choice> {
    if choice.sites.is_empty() {
        return None;
    }
    let keep: Vec<Site> = match globals {
        Some(Globals::Named(names)) => choice
            .sites
            .iter()
            .filter(|s| {
                let root = s.variable.as_deref().map(|v| v.split('.').next().unwrap_or(v));
                s.scope == Scope::Global && root.is_some_and(|r| names.contains(r))
            })
            .cloned()
            .collect(),
        Some(Globals::NoneOfThem) => choice.sites.iter().filter(|s| s.scope != Scope::Global).cloned().collect(),
        Some(Globals::Mixed) | None => choice.sites.clone(),
    };
    (!keep.is_empty()).then_some(Choice { method: choice.method, sites: keep })
}

/// What a function's body says about the locks of one kind it takes.
struct Choice {
    method: SiteMethod,
    sites: Vec<Site>,
}

/// Resolves every stack of `trace` that its records use, at its line where
/// `located` (from [`locate_call_sites`]; may be empty) places it; `progress`
/// sees (done, total, function). `learned` is what earlier traces taught
/// about the tree, and grows by what this one does.
pub fn resolve_stacks(
    clangd: &mut Clangd,
    learned: &mut Learned,
    trace: &Trace,
    located: &Located,
    progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<StackSite>, ClangdError> {
    // Kept on every path out, errors included.
    let mut resolver = Resolver::resuming(clangd, std::mem::take(learned));
    let resolved = resolve_each_stack(&mut resolver, trace, located, progress);
    *learned = resolver.into_learned();
    resolved
}

fn resolve_each_stack(
    resolver: &mut Resolver,
    trace: &Trace,
    located: &Located,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<StackSite>, ClangdError> {
    let symbols = SymbolTable::from_snapshot(trace.symbols.clone());
    let mut kinds: HashMap<i32, LockKind> = HashMap::new();
    let mut addrs: HashMap<i32, BTreeSet<u64>> = HashMap::new();
    for r in trace.records.iter().filter(|r| r.stack_id >= 0) {
        kinds.entry(r.stack_id).or_insert_with(|| r.kind());
        addrs.entry(r.stack_id).or_default().insert(r.lock_addr);
    }
    // Where kallsyms lists data symbols, a lock's address says whether it is
    // a global (and which): that tells apart a function's candidate locks.
    let globals_of = |id: i32| -> Option<Globals> {
        if !trace.meta.kallsyms_all {
            return None;
        }
        let names: Vec<Option<String>> = addrs[&id].iter().map(|&a| symbols.data_symbol(a).map(|(s, _)| s.name.clone())).collect();
        Some(if names.iter().all(Option::is_some) {
            Globals::Named(names.into_iter().flatten().collect())
        } else if names.iter().all(Option::is_none) {
            Globals::NoneOfThem
        } else {
            Globals::Mixed
        })
    };
    // Each stack's call site and the function that called it, named once.
    let call_sites: HashMap<i32, (String, Option<String>)> = trace
        .stacks
        .iter()
        .filter_map(|s| {
            let mut functions = functions_from_call_site(&symbols, s)?.into_iter();
            Some((s.id, (functions.next()?, functions.next())))
        })
        .collect();
    prefetch_call_sites(resolver.clangd(), &call_sites.values().map(|(f, _)| f.clone()).collect(), &mut progress)?;
    let mut by_function: HashMap<(String, LockKind, bool), (Option<String>, Choice)> = HashMap::new();
    let mut out = vec![];
    let stacks: Vec<_> = trace.stacks.iter().filter(|s| kinds.contains_key(&s.id)).collect();
    for (done, stack) in stacks.iter().enumerate() {
        let kind = kinds[&stack.id];
        let Some((function, caller)) = call_sites.get(&stack.id).cloned() else {
            out.push(unresolved(stack.id, "", None, "no call site on the stack"));
            continue;
        };
        progress(done, stacks.len(), &function);
        if !located.is_empty() && located.get(&stack.id).is_none_or(Vec::is_empty) {
            tracing::debug!("{function}: the debug info does not place its call site");
        }
        if let Some(chains) = located.get(&stack.id) {
            if let Some(site) = by_line(resolver, chains, kind)? {
                let choice = Choice { method: SiteMethod::Line, sites: vec![site] };
                if let Some(choice) = narrow(&choice, globals_of(stack.id)) {
                    let file = choice.sites[0].file.clone();
                    out.push(stack_site(stack.id, &function, Some(&file), kind, &choice));
                    continue;
                }
            }
        }
        // The function's own acquisitions first; its inlinable callees' when
        // it has none of this kind or none matches what the addresses show.
        let mut chosen = None;
        for follow in [false, true] {
            let key = (function.clone(), kind, follow);
            if !by_function.contains_key(&key) {
                let found = choose(resolver, &function, kind, follow)?;
                by_function.insert(key.clone(), found);
            }
            let (file, choice) = &by_function[&key];
            match narrow(choice, globals_of(stack.id)) {
                Some(narrowed) => {
                    chosen = Some((file.clone(), narrowed));
                    break;
                }
                None if chosen.is_none() && !choice.sites.is_empty() => {
                    chosen = Some((file.clone(), Choice { method: choice.method, sites: choice.sites.clone() }))
                }
                None => {}
            }
        }
        // A lock wrapper was handed its lock: the caller's call of it names it.
        let handed_in = chosen.as_ref().is_some_and(|(_, c)| !c.sites.is_empty() && c.sites.iter().all(|s| s.argument.is_some()));
        if let (true, Some(caller)) = (handed_in, caller) {
            if let Some((file, sites)) = resolver.locks_handed_to(&caller, &function)? {
                let sites = sites.into_iter().filter(|s| s.lock_type.is_some_and(|t| takes(t, kind))).collect();
                if let Some(narrowed) = narrow(&Choice { method: SiteMethod::Caller, sites }, globals_of(stack.id)) {
                    chosen = Some((Some(file), narrowed));
                }
            }
        }
        let defined_in = by_function[&(function.clone(), kind, false)].0.clone();
        let (file, choice) = chosen.unwrap_or((defined_in, Choice { method: SiteMethod::Unresolved, sites: vec![] }));
        out.push(stack_site(stack.id, &function, file.as_deref(), kind, &choice));
    }
    Ok(out)
}

/// The lock named at the located lines: from the innermost function outside
/// the lock implementation outward, until a line names one lock of `kind`.
/// A line inside a wrapper that was handed its lock defers to the line that
/// called it; anything else ends the search (None: no single lock there).
fn by_line(resolver: &mut Resolver, chains: &[Vec<InlinedAt>], kind: LockKind) -> Result<Option<Site>, ClangdError> {
    let outward = chains.iter().flatten().skip_while(|at| acquisition(&at.function).is_some() || is_lock_function(&at.function));
    for at in outward {
        let Some(file) = in_tree(resolver.root(), &at.file) else {
            tracing::debug!("{} ({}): not in the source tree", at.function, at.file);
            return Ok(None);
        };
        let sites = resolver.resolve(Path::new(&file), at.line)?;
        let of_kind: Vec<&Site> = sites.iter().filter(|s| s.lock_type.is_some_and(|t| takes(t, kind))).collect();
        let names: BTreeSet<String> = of_kind.iter().filter_map(|s| s.lock_name()).collect();
        if names.len() == 1 {
            return Ok(of_kind.into_iter().find(|s| s.lock_name().is_some()).cloned());
        }
        let handed_in = names.is_empty() && of_kind.iter().any(|s| s.argument.is_some());
        if !handed_in {
            tracing::debug!("{file}:{} in {}: {} {} locks named: {names:?}", at.line, at.function, names.len(), kind.name());
            return Ok(None);
        }
    }
    tracing::debug!("no located line names a {} lock", kind.name());
    Ok(None)
}

/// Places each stack's call site in a subsystem by its function's name
/// alone, for traces from a kernel whose source is not at hand: no line, no
/// lock, only where in the kernel the lock was taken. A call site the source
/// does not define (renamed since) is placed by its nearest caller that it does.
pub fn place_by_function_name(trace: &Trace, index: &crate::functions::FunctionIndex) -> Vec<StackSite> {
    let symbols = SymbolTable::from_snapshot(trace.symbols.clone());
    let used = used_stacks(trace);
    trace
        .stacks
        .iter()
        .filter(|s| used.contains(&s.id))
        .map(|s| {
            let Some(functions) = functions_from_call_site(&symbols, s) else {
                return unresolved(s.id, "", None, "no call site on the stack");
            };
            let placed = functions.iter().take(4).find_map(|f| index.subsystem(f).map(|sub| (f, sub)));
            let why = "the source is another kernel version: placed by function name only";
            let mut out = unresolved(s.id, &functions[0], None, why);
            if let Some((by, subsystem)) = placed {
                out.file = index.files(by).first().cloned();
                out.subsystem = Some(subsystem);
                out.method = SiteMethod::FunctionName;
            }
            out
        })
        .collect()
}

/// The stacks of `trace` that took a lock run-time naming could not name
/// because it lies in no slab object or per-CPU variable (static data, a
/// page of its own, vmalloc), with the kind each took and whether any of
/// those locks is in static data (the kernel image): what another kernel
/// version's source may still name.
fn unnamed_outside_slabs(trace: &Trace) -> HashMap<i32, (LockKind, bool)> {
    let named: BTreeSet<(u64, u32)> = trace.names.iter().map(|n| (n.lock_addr, n.generation)).collect();
    let outside = trace.outside_slabs();
    let mut stacks: HashMap<i32, (LockKind, bool)> = HashMap::new();
    for r in trace.records.iter().filter(|r| r.stack_id >= 0) {
        let lock = (r.lock_addr, r.generation);
        if outside.contains(&lock) && !named.contains(&lock) {
            stacks.entry(r.stack_id).or_insert((r.kind(), false)).1 |= in_kernel_image(r.lock_addr);
        }
    }
    stacks
}

/// Names, from the source of another kernel version than the traces', the
/// locks run-time naming could not: those in no slab object or per-CPU
/// variable, globals among them where kallsyms lists no data symbols. Each
/// such stack's site, placed by [`place_by_function_name`], gains the lock
/// its call site's function takes in that source (its own acquisitions
/// first, then those inlined from its callees) where one candidate of the
/// recorded kind is left: for a lock in static data its one global, else its
/// one member lock; elsewhere its one member lock. Marked
/// [`SiteMethod::OtherVersion`]: the function may have changed since.
/// Returns how many sites of each trace were named.
pub fn infer_unnamed_locks(
    clangd: &mut Clangd,
    index: &crate::functions::FunctionIndex,
    traces: &mut [&mut Trace],
) -> Result<Vec<usize>, ClangdError> {
    // Per trace, its sites to name: (index, kind, whether any lock is in static data).
    let targets: Vec<Vec<(usize, LockKind, bool)>> = traces
        .iter()
        .map(|trace| {
            let wanted = unnamed_outside_slabs(trace);
            let placed = |s: &StackSite| s.method == SiteMethod::FunctionName && !index.files(&s.function).is_empty();
            let sites = trace.sites.iter().enumerate().filter(|(_, s)| placed(s));
            sites.filter_map(|(i, s)| wanted.get(&s.stack_id).map(|&(kind, in_static_data)| (i, kind, in_static_data))).collect()
        })
        .collect();
    // Without clangd's index a function is found only in a file opened.
    let functions = traces.iter().zip(&targets).flat_map(|(t, targets)| targets.iter().map(|&(i, ..)| t.sites[i].function.as_str()));
    let files: BTreeSet<_> = functions.flat_map(|f| index.files(f)).map(|f| clangd.root().join(f)).collect();
    clangd.prefetch_symbols(&files.into_iter().collect::<Vec<_>>(), |_| {})?;
    let mut resolver = Resolver::new(clangd);
    let mut named = vec![0; traces.len()];
    for ((trace, targets), named) in traces.iter_mut().zip(targets).zip(&mut named) {
        for (i, kind, in_static_data) in targets {
            let function = trace.sites[i].function.clone();
            let scopes: &[Scope] = if in_static_data { &[Scope::Global, Scope::Member] } else { &[Scope::Member] };
            let mut found: Vec<Site> = vec![];
            'search: for follow in [false, true] {
                let (_, choice) = choose(&mut resolver, &function, kind, follow)?;
                for &scope in scopes {
                    found = choice.sites.iter().filter(|s| s.scope == scope && s.lock_name().is_some()).cloned().collect();
                    if !found.is_empty() {
                        break 'search;
                    }
                }
            }
            let names: BTreeSet<String> = found.iter().filter_map(Site::lock_name).collect();
            let site = &mut trace.sites[i];
            match (names.len(), found.first()) {
                (1, Some(lock)) => {
                    let choice = Choice { method: SiteMethod::OtherVersion, sites: vec![lock.clone()] };
                    *site = stack_site(site.stack_id, &function, Some(&lock.file), kind, &choice);
                    *named += 1;
                }
                (0, _) | (_, None) => {}
                (n, _) => {
                    site.candidates = n as u32;
                    let list: Vec<&str> = names.iter().map(String::as_str).collect();
                    site.reason = Some(format!("in this source {function} takes {n} such {} locks: {}", kind.name(), list.join(", ")));
                }
            }
        }
    }
    Ok(named)
}

/// Has clangd parse the files of every call-site function up front, several
/// at a time: parsing is most of the cost, and one at a time leaves cores idle.
fn prefetch_call_sites(
    clangd: &mut Clangd,
    functions: &BTreeSet<String>,
    progress: &mut impl FnMut(usize, usize, &str),
) -> Result<(), ClangdError> {
    let mut files = BTreeSet::new();
    for function in functions {
        let found = clangd.workspace_symbols(function)?;
        let definition = found.iter().find(|s| s.name == *function && s.kind == lsp_types::SymbolKind::FUNCTION);
        files.extend(definition.and_then(|s| crate::clangd::uri_path(&s.location.uri)));
    }
    let files: Vec<_> = files.into_iter().collect();
    clangd.prefetch_symbols(&files, |done| progress(done, files.len(), "parsing the call sites' files"))
}

/// `d_alloc_parallel.cold+0x12` → `d_alloc_parallel`: the source's name for
/// a frame's function, without compiler suffixes.
fn source_name(frame: &lockscope_trace::Frame) -> String {
    let name = frame.function_name();
    name.split('.').next().unwrap_or(&name).to_owned()
}

fn takes(lock_type: LockType, kind: LockKind) -> bool {
    use LockKind as K;
    use LockType as T;
    match kind {
        K::Spinlock => matches!(lock_type, T::Spinlock | T::RawSpinlock | T::Seqlock),
        K::RwlockRead | K::RwlockWrite => lock_type == T::Rwlock,
        K::Mutex => lock_type == T::Mutex,
        K::RtMutex => lock_type == T::RtMutex,
        K::RwsemRead | K::RwsemWrite => lock_type == T::RwSemaphore,
        K::PercpuRwsemRead | K::PercpuRwsemWrite => lock_type == T::PercpuRwSemaphore,
        K::Semaphore => lock_type == T::Semaphore,
    }
}

/// The acquisitions of `kind` in `function`'s own body, or with `follow`
/// in the callees that could have been inlined into it ("completed").
fn choose(resolver: &mut Resolver, function: &str, kind: LockKind, follow: bool) -> Result<(Option<String>, Choice), ClangdError> {
    let Some((file, sites)) = resolver.locks_in_function(function, follow)? else {
        return Ok((None, Choice { method: SiteMethod::Unresolved, sites: vec![] }));
    };
    let method = if follow { SiteMethod::Completed } else { SiteMethod::Function };
    let sites = sites.into_iter().filter(|s| s.lock_type.is_some_and(|t| takes(t, kind))).collect();
    Ok((Some(file), Choice { method, sites }))
}

fn stack_site(stack_id: i32, function: &str, file: Option<&str>, kind: LockKind, choice: &Choice) -> StackSite {
    let subsystem = file.map(subsystem_of);
    let Some(file) = file else {
        return unresolved(stack_id, function, None, &format!("{function} is not defined in the source tree"));
    };
    let names: BTreeSet<String> = choice.sites.iter().map(|s| s.lock_name().unwrap_or_else(|| "?".into())).collect();
    let mut site = unresolved(stack_id, function, subsystem.clone(), "");
    site.candidates = names.len() as u32;
    match (names.len(), choice.sites.first()) {
        (0, _) | (_, None) => site.reason = Some(format!("{function} ({file}) takes no {} here or in what it calls", kind.name())),
        (1, Some(s)) if s.lock_name().is_some() => {
            site.method = choice.method;
            site.reason = None;
            site.file = Some(s.file.clone());
            site.line = Some(s.line);
            site.scope = s.scope;
            site.object = s.object.clone();
            site.member = s.member.clone();
            site.variable = s.variable.clone();
            site.lock_type = s.lock_type.map(|t| t.name().to_owned());
            site.subsystem = Some(subsystem_of(&s.file));
        }
        (1, Some(s)) => site.reason = s.reason.clone(),
        _ => {
            let list: Vec<&str> = names.iter().map(String::as_str).collect();
            site.reason = Some(format!("{function} takes {} {} locks: {}", names.len(), kind.name(), list.join(", ")));
        }
    }
    site
}

fn unresolved(stack_id: i32, function: &str, subsystem: Option<String>, reason: &str) -> StackSite {
    StackSite {
        stack_id,
        function: function.to_owned(),
        file: None,
        line: None,
        scope: Scope::Unknown,
        object: None,
        member: None,
        variable: None,
        lock_type: None,
        subsystem,
        method: SiteMethod::Unresolved,
        candidates: 0,
        reason: Some(reason.to_owned()),
    }
}

/// The kernel subsystem of a source path: its top-level directory (`fs`,
/// `mm`, `kernel`, `net`, …), with `fs/ext4`-style second levels kept for
/// fs, net and drivers where the paper's figures split them.
pub fn subsystem_of(file: &str) -> String {
    let mut parts = file.split('/');
    let top = parts.next().unwrap_or(file);
    match (top, parts.next(), parts.next()) {
        ("fs" | "net" | "drivers", Some(second), Some(_)) => format!("{top}/{second}"),
        _ => top.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_name_source_functions() {
        let frame = |function: &str, module: Option<&str>| lockscope_trace::Frame {
            addr: 0xffffffff81000000,
            function: Some((function.into(), 0x12)),
            module: module.map(str::to_owned),
        };
        assert_eq!(source_name(&frame("d_alloc_parallel.cold", None)), "d_alloc_parallel");
        assert_eq!(source_name(&frame("ext4_map_blocks", Some("ext4"))), "ext4_map_blocks");
        assert_eq!(source_name(&frame("__mutex_lock.constprop.0", None)), "__mutex_lock");
    }

    #[test]
    fn a_renamed_call_site_is_placed_by_its_nearest_known_caller() {
        use lockscope_trace::*;
        let text = |addr: u64, name: &str| Symbol { addr, size: 0x100, name: name.into(), module: None, kind: SymbolKind::Text };
        let record = LockRecord {
            workload: 1,
            tgid: 1,
            lock_addr: 0xffff888000001000,
            generation: 0,
            flags: lock_flags::SPIN,
            stack_id: 7,
            count: 1,
            wait_total_ns: 0,
            wait_max_ns: 0,
            hold_total_ns: 0,
            hold_max_ns: 0,
            failed_trylocks: 0,
            first_ns: 0,
            in_interrupt: false,
        };
        let trace = Trace {
            meta: serde_json::from_value(serde_json::json!({
                "format": FORMAT_NAME, "version": FORMAT_VERSION, "lockscope_version": "t", "kernel_release": "6.18", "hostname": "h",
                "mode": "contention", "hook": "tp_btf", "attached": [], "notes": [], "started_unix_ns": 0, "ended_unix_ns": 1,
                "end_reason": "duration", "kallsyms_all": false, "workloads": [], "counters": Counters::default(), "files": []
            }))
            .unwrap(),
            records: vec![record],
            stacks: vec![Stack { id: 7, frames: vec![0xffffffff81000104, 0xffffffff81000204, 0xffffffff81000304] }],
            symbols: vec![
                text(0xffffffff81000100, "_raw_spin_lock"),
                text(0xffffffff81000200, "find_get_block_common"),
                text(0xffffffff81000300, "__find_get_block"),
            ],
            sites: vec![],
            places: vec![],
            names: vec![],
            unnamed: vec![],
            held_waits: vec![],
        };
        let index = crate::functions::FunctionIndex::from_definitions([("__find_get_block", "fs/buffer.c")]);
        let sites = place_by_function_name(&trace, &index);
        assert_eq!(sites.len(), 1);
        let s = &sites[0];
        assert_eq!((s.function.as_str(), s.method), ("find_get_block_common", SiteMethod::FunctionName));
        assert_eq!((s.file.as_deref(), s.subsystem.as_deref(), s.lock_name()), (Some("fs/buffer.c"), Some("fs"), None));
    }

    #[test]
    fn subsystems_are_top_level_directories() {
        assert_eq!(subsystem_of("fs/ext4/inode.c"), "fs/ext4");
        assert_eq!(subsystem_of("fs/inode.c"), "fs");
        assert_eq!(subsystem_of("mm/filemap.c"), "mm");
        assert_eq!(subsystem_of("include/linux/fs.h"), "include");
    }

    #[test]
    fn lock_kinds_match_lock_types() {
        assert!(takes(LockType::Spinlock, LockKind::Spinlock));
        assert!(takes(LockType::Seqlock, LockKind::Spinlock));
        assert!(takes(LockType::RwSemaphore, LockKind::RwsemWrite));
        assert!(!takes(LockType::Mutex, LockKind::Spinlock));
    }
}
