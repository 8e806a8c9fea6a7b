//! lockscope's naming stage: from where a lock lives in memory (as the
//! recorder noted it) to the kernel object and member that hold it, through
//! the recording kernel's BTF, with no kernel source needed.
//!
//! - `btf`: the BPF Type Format, read directly: struct layouts;
//! - `locks`: which types are locks, and the lock member at an offset;
//! - `slab`: a lock in a slab object: its offset, the types its cache holds,
//!   the one (or ones) with a lock of the recorded kind there;
//! - `percpu`: a lock in a per-CPU variable, from where each CPU's area begins;
//! - `globals`: a lock in the kernel image, from kallsyms' data symbols.
//!
//! Names are computed where the trace is recorded (the BTF is that
//! kernel's) and kept in the trace, so a report elsewhere shows the same.

pub mod btf;
pub mod globals;
mod locks;
pub mod percpu;
pub mod slab;

pub use locks::{lock_at, spellings};

use std::collections::HashMap;

use lockscope_trace::frames::call_site;
use lockscope_trace::{Confidence, LockKind, LockName, LockPlace, NameSource, SymbolTable, Trace, UnnamedLock, PLACES_NEED};

pub use btf::{Btf, BtfError};

/// Which run-time naming sources a kernel allows.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Sources {
    /// Slab objects: the recorder can tell a lock's slab cache.
    pub slab: bool,
    /// How: `bpf_get_kmem_cache` (the kfunc, 6.13+, from tp_btf and
    /// trampoline programs) or `slab pages` (read from the lock's page, where
    /// kallsyms locates the page array and a slab's page says so: `PG_slab`
    /// up to 6.9, the page type `PGTY_slab` from 6.12).
    pub slab_by: Option<&'static str>,
    /// Per-CPU variables: BTF lists them, `runqueues` among them.
    pub percpu: bool,
    /// Globals in the kernel image: kallsyms lists data symbols.
    pub globals: bool,
}

/// The naming sources of the kernel with this BTF and these symbols.
pub fn sources(btf: &Btf, kallsyms: &SymbolTable) -> Sources {
    let pages = lockscope_trace::kallsyms::PAGE_SYMBOLS.iter().all(|name| kallsyms.address_of(name).is_some());
    let slab_by = if btf.has_function("bpf_get_kmem_cache") {
        Some("bpf_get_kmem_cache")
    } else if pages && (btf.has_enumerator("pageflags", "PG_slab") || btf.has_enumerator("pagetype", "PGTY_slab")) {
        Some("slab pages")
    } else {
        None
    };
    let percpu = btf.percpu_variables().0.iter().any(|(name, ..)| *name == "runqueues");
    Sources { slab: slab_by.is_some(), slab_by, percpu, globals: kallsyms.has_data_symbols() }
}

/// The spellings of `object.member` from each struct it is embedded in.
fn spelled(btf: &Btf, object: &str, member: &str) -> Vec<String> {
    match (btf.structs_named(object).first(), member.is_empty()) {
        (Some(&ty), false) => spellings(btf, ty, member),
        _ => vec![],
    }
}

/// The key counted most (the lowest among equals, so the choice is stable).
fn busiest<K: Copy + Ord>(counts: &HashMap<K, u64>) -> Option<K> {
    counts.iter().max_by_key(|&(k, n)| (*n, std::cmp::Reverse(*k))).map(|(k, _)| *k)
}

/// Names every lock of `trace` whose place the recorder noted, replacing
/// names given before, and notes in the trace how many were named.
pub fn name_trace(trace: &mut Trace, btf: &Btf) {
    let symbols = SymbolTable::from_snapshot(trace.symbols.clone());
    let stacks: HashMap<i32, &[u64]> = trace.stacks.iter().map(|s| (s.id, s.frames.as_slice())).collect();
    // Per lock: acquisitions by kind and by stack (its busiest names its call site).
    #[derive(Default)]
    struct Uses {
        kinds: HashMap<LockKind, u64>,
        stacks: HashMap<i32, u64>,
    }
    let mut uses: HashMap<(u64, u32), Uses> = HashMap::new();
    for r in &trace.records {
        let u = uses.entry((r.lock_addr, r.generation)).or_default();
        *u.kinds.entry(r.kind()).or_default() += r.count;
        *u.stacks.entry(r.stack_id).or_default() += r.count;
    }

    let (mut names, mut unnamed, mut outside) = (vec![], vec![], 0);
    let mut in_slabs: Vec<(&LockPlace, slab::SlabName)> = vec![];
    let mut namer = slab::SlabNamer::default();
    // Each stack's call site, once.
    let mut sites: HashMap<i32, Option<String>> = HashMap::new();
    for place in &trace.places {
        let Some(u) = uses.get(&(place.lock_addr, place.generation)) else { continue };
        let kind = busiest(&u.kinds).expect("a used lock has a kind");
        let Some(cache) = &place.slab else {
            if let Some(n) = percpu::name_in_percpu(btf, place.lock_addr, &trace.meta.runqueues, kind) {
                names.push(LockName {
                    lock_addr: place.lock_addr,
                    generation: place.generation,
                    by: NameSource::Percpu,
                    spellings: n.object.as_ref().map_or(vec![], |o| spelled(btf, o, &n.member)),
                    object: n.object.filter(|_| !n.member.is_empty()),
                    member: (!n.member.is_empty()).then_some(n.member),
                    global: Some(n.variable),
                    confidence: Confidence::Exact,
                    alternatives: vec![],
                });
            } else if let Some((symbol, offset)) = symbols.data_symbol(place.lock_addr).filter(|_| trace.meta.kallsyms_all) {
                let n = globals::name_in_global(btf, &symbol.name, offset, kind);
                let (object, member) = n.member.unzip();
                names.push(LockName {
                    lock_addr: place.lock_addr,
                    generation: place.generation,
                    by: NameSource::Kallsyms,
                    spellings: object.as_ref().zip(member.as_ref()).map_or(vec![], |(o, m)| spelled(btf, o, m)),
                    object,
                    member,
                    global: Some(n.variable),
                    confidence: n.confidence,
                    alternatives: vec![],
                });
            } else {
                outside += 1;
            }
            continue;
        };
        let site = busiest(&u.stacks).and_then(|id| {
            sites
                .entry(id)
                .or_insert_with(|| stacks.get(&id).and_then(|frames| call_site(&symbols.frames(frames)).map(|f| f.function_name())))
                .clone()
        });
        match namer.name(btf, place.lock_addr, cache, place.slab_start, kind, site.as_deref()) {
            Ok(n) => in_slabs.push((place, n)),
            Err(reason) => unnamed.push(UnnamedLock { lock_addr: place.lock_addr, generation: place.generation, reason }),
        }
    }
    // An object some lock names surely (a pipe by its mutex) settles which
    // of several types another lock at the same object is in (its wait queue's).
    let known: HashMap<u64, String> =
        in_slabs.iter().filter(|(_, n)| n.confidence != Confidence::Ambiguous).map(|(_, n)| (n.base, n.object.clone())).collect();
    for (place, mut n) in in_slabs {
        if n.confidence == Confidence::Ambiguous {
            if let Some(object) = known.get(&n.base) {
                n.settle_on(object);
            }
        }
        names.push(LockName {
            lock_addr: place.lock_addr,
            generation: place.generation,
            by: NameSource::Slab,
            spellings: spelled(btf, &n.object, &n.member),
            object: Some(n.object),
            member: Some(n.member),
            global: None,
            confidence: n.confidence,
            alternatives: n.alternatives.into_iter().map(|(o, m)| format!("{o}.{m}")).collect(),
        });
    }
    let mut notes = vec![];
    if trace.places.is_empty() {
        if !trace.records.is_empty() {
            notes.push(format!("locks not named at run time: the recorder could not tell where they live (it needs {PLACES_NEED})"));
        }
    } else {
        let by = |source: NameSource| names.iter().filter(|n| n.by == source).count();
        let mut note = format!(
            "{} of {} locks named from their slab cache ({}), per-CPU variable ({}) or data symbol ({}) and the kernel's BTF; \
             {outside} in none of these",
            names.len(),
            trace.places.len(),
            by(NameSource::Slab),
            by(NameSource::Percpu),
            by(NameSource::Kallsyms)
        );
        if !unnamed.is_empty() {
            note.push_str(&format!("; {} not matched to a struct member", unnamed.len()));
        }
        notes.push(note);
    }
    trace.names = names;
    trace.unnamed = unnamed;
    trace.meta.notes.extend(notes);
}
