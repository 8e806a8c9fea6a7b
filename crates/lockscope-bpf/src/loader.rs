//! Loading and attaching the recorders' BPF programs, and the view of them
//! the recording session uses whichever mode runs.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use libbpf_rs::btf::types::{Func, Typedef};
use libbpf_rs::btf::Btf;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, ProgramMut};
use lockscope_trace::kallsyms::{addresses_of, PAGE_SYMBOLS};
use lockscope_trace::{Mode, ProgramCost};

use crate::acquire_skel::{AcquireSkel, AcquireSkelBuilder};
use crate::contention_skel::{ContentionSkel, ContentionSkelBuilder};
use crate::cpus;
use crate::libbpf_log;
use crate::primitives::{self, Role};
use crate::recorder::{HookRequest, Lifetimes, LockClass, RecordError, DEFAULT_STACK_DEPTH};
use crate::sampling;
use lockscope_proc::procfs;

/// What the user asked of the programs.
pub struct Settings<'a> {
    pub hook: HookRequest,
    pub max_records: u32,
    pub lock_classes: &'a [LockClass],
    /// 0: no stacks (acquire mode).
    pub stack_depth: u32,
    /// Acquire mode: probe the unlock functions (hold times).
    pub hold_times: bool,
    /// Acquire mode: one stack in N after a lock's first few (1: every one).
    pub stack_sample: u32,
    /// The slab-free (and lock-init) programs that end lock lives.
    pub lifetimes: Lifetimes,
}

/// The note of a recording that kept no lock lifetimes.
const LIFETIMES_NOT_KEPT: &str =
    "lock lifetimes not kept (--no-lifetimes): a slab object's address reused for another object's lock passes for the lock it replaced";

/// The maps every recorder has (see src/bpf/workloads.bpf.h).
pub struct Maps<'a> {
    pub tracked: &'a dyn MapCore,
    pub seen: &'a dyn MapCore,
    pub cgroup_targets: &'a dyn MapCore,
    pub stacks: &'a dyn MapCore,
    pub aggregates: &'a dyn MapCore,
    pub counters: &'a dyn MapCore,
    /// Where locks live (src/bpf/places.bpf.h).
    pub places: PlaceMaps<'a>,
    /// Waits by the holder of the lock, where waits are timed.
    pub holders: Option<&'a dyn MapCore>,
}

/// `lock_places`, `cache_infos` and `percpu_runqueues`.
pub struct PlaceMaps<'a> {
    pub locks: &'a dyn MapCore,
    pub caches: &'a dyn MapCore,
    pub runqueues: &'a dyn MapCore,
}

/// The common maps of a skeleton (every recorder object has them, by name).
macro_rules! common_maps {
    ($m:expr) => {
        Maps {
            tracked: &$m.tracked_tgids,
            seen: &$m.seen_tgids,
            cgroup_targets: &$m.cgroup_targets,
            stacks: &$m.stacks,
            aggregates: &$m.aggregates,
            counters: &$m.counters,
            places: PlaceMaps { locks: &$m.lock_places, caches: &$m.cache_infos, runqueues: &$m.percpu_runqueues },
            holders: None,
        }
    };
}

/// Tells a recorder's programs what they need to see what runs on the other
/// CPUs (spinlock holders; see src/cpus.rs), from the kernel's BTF.
macro_rules! locate_cpus {
    ($rodata:expr, $btf:expr) => {
        $rodata.nr_cpus = cpus::possible();
        match $btf.and_then(cpus::preempt_count_from_runqueues) {
            Some(offset) => {
                $rodata.preempt_count_from_rq = offset;
                $rodata.preempt_count_located = true;
            }
            None => tracing::info!("spinlock holders not sought, interrupt context not read: BTF does not locate the preempt count"),
        }
    };
}

/// A loaded, attached recorder.
pub struct Kernel<'a> {
    pub maps: Maps<'a>,
    pub mode: Mode,
    /// The hook kind: `tp_btf`, `tracepoint`, `fentry`.
    pub hook: String,
    /// The kernel functions or tracepoints the programs are attached to.
    pub attached: Vec<String>,
    /// What the trace reader should know about how it was recorded.
    pub notes: Vec<String>,
    /// The attached programs (fds valid while the skeleton lives, which outlives this view).
    progs: Vec<AttachedProgram>,
    links: Vec<Link>,
}

impl<'a> Kernel<'a> {
    /// Detaches every program; the maps stay readable.
    pub fn detach(mut self) -> Self {
        self.links.clear();
        self
    }

    /// What the kernel counted of each program's runs.
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.progs
            .iter()
            .filter_map(|AttachedProgram { name, fd }| {
                let mut info = libbpf_sys::bpf_prog_info::default();
                let mut len = std::mem::size_of_val(&info) as u32;
                // SAFETY: info is a valid bpf_prog_info of `len` bytes.
                let ret =
                    unsafe { libbpf_sys::bpf_obj_get_info_by_fd(*fd, (&mut info as *mut libbpf_sys::bpf_prog_info).cast(), &mut len) };
                (ret == 0).then(|| ProgramStats {
                    cost: ProgramCost { name: name.clone(), runs: info.run_cnt, run_time_ns: info.run_time_ns },
                    recursion_misses: info.recursion_misses,
                })
            })
            .collect()
    }
}

/// The kernel's counts of one of a recorder's programs.
#[derive(Clone, Debug, Default)]
pub struct ProgramStats {
    /// Its runs and their time: counted only while BPF statistics are enabled.
    pub cost: ProgramCost,
    /// Runs skipped because a BPF program was already active on the CPU.
    pub recursion_misses: u64,
}

/// A program attached by [`attach_all`]: its name in the BPF object and its fd.
struct AttachedProgram {
    name: String,
    fd: RawFd,
}

fn attach_all<'p, 'obj: 'p>(
    progs: impl IntoIterator<Item = &'p ProgramMut<'obj>>,
) -> Result<(Vec<Link>, Vec<AttachedProgram>), RecordError> {
    let (mut links, mut fds) = (Vec::new(), Vec::new());
    for prog in progs {
        let link =
            prog.attach().map_err(|e| RecordError::Attach(libbpf_log::explain(format!("{}: {e}", prog.name().to_string_lossy()))))?;
        links.push(link);
        fds.push(AttachedProgram { name: prog.name().to_string_lossy().into_owned(), fd: prog.as_fd().as_raw_fd() });
    }
    Ok((links, fds))
}

// ---------------------------------------------------------------- contention

/// Loads with tp_btf programs, falling back to classic tracepoints. A failed
/// load consumes its object, hence one slot per attempt.
pub fn load_contention<'obj>(
    objects: &'obj mut [MaybeUninit<libbpf_rs::OpenObject>; 2],
    s: &Settings<'_>,
) -> Result<ContentionSkel<'obj>, RecordError> {
    let [first, second] = objects;
    let tp_btf = if s.hook == HookRequest::Tracepoint {
        "not tried (--hook tracepoint)".to_owned()
    } else {
        match load_contention_with(first, true, s) {
            Ok(skel) => return Ok(skel),
            Err(e) if s.hook == HookRequest::TpBtf => {
                return Err(RecordError::Unsupported { tp_btf: e, tracepoint: "not tried (--hook tp_btf)".into() })
            }
            Err(e) => e,
        }
    };
    tracing::info!("tp_btf contention programs refused ({tp_btf}); trying classic tracepoints");
    if let Err(e) = procfs::ensure_tracefs() {
        return Err(RecordError::Unsupported { tp_btf, tracepoint: format!("tracefs unavailable: {e}") });
    }
    load_contention_with(second, false, s).map_err(|tracepoint| RecordError::Unsupported { tp_btf, tracepoint })
}

fn load_contention_with<'obj>(
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    btf: bool,
    s: &Settings<'_>,
) -> Result<ContentionSkel<'obj>, String> {
    libbpf_log::capture();
    let mut open = ContentionSkelBuilder::default().open(object).map_err(libbpf_log::explain)?;
    open.progs.lks_btf_begin.set_autoload(btf);
    open.progs.lks_btf_end.set_autoload(btf);
    open.progs.lks_tp_begin.set_autoload(!btf);
    open.progs.lks_tp_end.set_autoload(!btf);
    // Typed free programs only where the kernel's kfunc tells a kfree'd
    // object's cache (6.13+): older kernels' tp_btf refuses to read the
    // freed object, a `const void *`, and raw tracepoints serve there.
    let vmlinux = Btf::from_vmlinux().ok();
    let typed_frees = btf && vmlinux.as_ref().is_some_and(|b| b.type_by_name::<Func>("bpf_get_kmem_cache").is_some());
    let lifetimes = s.lifetimes.kept_in(Mode::Contention);
    open.progs.lks_btf_cache_free.set_autoload(lifetimes && typed_frees);
    open.progs.lks_btf_kfree.set_autoload(lifetimes && typed_frees);
    open.progs.lks_tp_cache_free.set_autoload(lifetimes && !typed_frees);
    open.progs.lks_tp_kfree.set_autoload(lifetimes && !typed_frees);
    open.maps.aggregates.set_max_entries(s.max_records).map_err(|e| e.to_string())?;
    // Contention mode always records stacks.
    let depth = if s.stack_depth == 0 { DEFAULT_STACK_DEPTH } else { s.stack_depth };
    open.maps.stacks.set_value_size(depth * 8).map_err(|e| e.to_string())?;
    if let Some(rodata) = open.maps.rodata_data.as_deref_mut() {
        rodata.stack_depth = depth;
        // Only BTF-typed tracepoints may call kfuncs; elsewhere a lock's
        // slab is read from its page, where kallsyms locates the pages.
        rodata.kmem_cache_kfunc = btf;
        [rodata.page_offset_base_addr, rodata.vmemmap_base_addr, rodata.max_pfn_addr] = addresses_of(&kallsyms(), PAGE_SYMBOLS);
        locate_cpus!(rodata, vmlinux.as_ref());
    }
    open.load().map_err(libbpf_log::explain)
}

pub fn attach_contention<'a>(skel: &'a ContentionSkel<'a>) -> Result<Kernel<'a>, RecordError> {
    let p = &skel.progs;
    let btf = p.lks_btf_begin.autoload();
    let [begin, end] = if btf { [&p.lks_btf_begin, &p.lks_btf_end] } else { [&p.lks_tp_begin, &p.lks_tp_end] };
    let mut programs = vec![begin, end, &p.lks_fork, &p.lks_exit];
    let mut attached = vec!["lock:contention_begin".to_owned(), "lock:contention_end".to_owned()];
    let frees = [&p.lks_btf_cache_free, &p.lks_btf_kfree, &p.lks_tp_cache_free, &p.lks_tp_kfree];
    let frees: Vec<_> = frees.into_iter().filter(|f| f.autoload()).collect();
    let note = if frees.is_empty() {
        LIFETIMES_NOT_KEPT
    } else {
        attached.extend(["kmem:kmem_cache_free".to_owned(), "kmem:kfree".to_owned()]);
        "a contended lock's address starts a new generation when the slab object holding it is freed \
         (kmem:kmem_cache_free, kmem:kfree); reuse after bulk frees (kfree_rcu's) and page frees is not told apart"
    };
    programs.extend(frees);
    let (links, progs) = attach_all(programs)?;
    let maps = Maps { holders: Some(&skel.maps.holder_waits), ..common_maps!(skel.maps) };
    Ok(Kernel {
        maps,
        mode: Mode::Contention,
        hook: if btf { "tp_btf" } else { "tracepoint" }.into(),
        attached,
        notes: vec![note.into()],
        progs,
        links,
    })
}

// ------------------------------------------------------------------- acquire

/// The waits acquire mode times: those on locks of the classes probed
/// (others' only when every class is).
fn wait_classes(classes: &[LockClass]) -> crate::acquire_skel::types::wait_class {
    use crate::acquire_skel::types::wait_class as W;
    let mut mask = if LockClass::ALL.iter().all(|c| classes.contains(c)) { W::WAIT_OTHER.0 } else { 0 };
    for class in classes {
        mask |= match class {
            LockClass::Spinlock => W::WAIT_SPINLOCK,
            LockClass::Rwlock => W::WAIT_RWLOCK,
            LockClass::Mutex => W::WAIT_MUTEX,
            LockClass::Rwsem => W::WAIT_RWSEM,
        }
        .0;
    }
    W(mask)
}

/// Whether a program's target frees slab objects (and so ends the locks in them).
fn is_free(target: &str) -> bool {
    primitives::role_of(target) == Some(Role::Free)
}

/// The kernel function (or tracepoint) a program is attached to, from its section `fexit/<fn>`.
fn target_of(section: &str) -> Option<&str> {
    section.split_once('/').map(|(_, f)| f)
}

/// How acquire-mode programs hook a function.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    /// fexit/fentry (BPF trampolines): cheapest, needs the kernel's permission.
    Trampoline,
    /// kprobe/kretprobe where trampolines are refused, with the slab-free
    /// raw tracepoints, which kprobe recursion does not silence.
    Kprobe,
}

impl Family {
    fn of(section: &str) -> Option<Family> {
        let (kind, target) = section.split_once('/')?;
        match kind {
            "fentry" | "fexit" => Some(Family::Trampoline),
            "kprobe" | "kretprobe" => Some(Family::Kprobe),
            // The other raw tracepoints (fork and exit) serve both families.
            "raw_tp" if is_free(target) => Some(Family::Kprobe),
            _ => None,
        }
    }

    fn hook_name(self) -> &'static str {
        match self {
            Family::Trampoline => "fentry",
            Family::Kprobe => "kprobe",
        }
    }
}

/// Loads the acquire programs, trampolines first, then kprobes; with the
/// kprobe family, also why trampolines were not used. A failed load consumes
/// its object, hence one slot per attempt.
pub fn load_acquire<'obj>(
    objects: &'obj mut [MaybeUninit<libbpf_rs::OpenObject>; 2],
    s: &Settings<'_>,
) -> Result<(AcquireSkel<'obj>, Option<String>), String> {
    let [first, second] = objects;
    let trampolines = match s.hook {
        HookRequest::Kprobe => "trampolines not tried (--hook kprobe)".to_owned(),
        _ => match load_acquire_with(first, Family::Trampoline, s) {
            Ok(skel) => return Ok((skel, None)),
            Err(e) if s.hook == HookRequest::Fentry => return Err(e),
            Err(e) => e,
        },
    };
    match load_acquire_with(second, Family::Kprobe, s) {
        Ok(skel) => Ok((skel, Some(trampolines))),
        Err(kprobe) => Err(format!("{trampolines}; kprobes: {kprobe}")),
    }
}

/// Attaches what [`load_acquire`] loaded; Err says why acquire mode cannot run.
pub fn start_acquire<'a>(skel: &'a AcquireSkel<'a>, why_not_trampolines: Option<String>, s: &Settings<'_>) -> Result<Kernel<'a>, String> {
    let mut k = attach_acquire(skel, s).map_err(|e| match &why_not_trampolines {
        Some(why) => format!("{why}; kprobes: {e}"),
        None => e.to_string(),
    })?;
    if let Some(why) = why_not_trampolines {
        k.notes.push(format!("recorded through kprobes ({why})"));
    }
    Ok(k)
}

/// Loads one family's programs for the functions this kernel has (per its
/// BTF) in the lock classes asked for.
fn load_acquire_with<'obj>(
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    family: Family,
    s: &Settings<'_>,
) -> Result<AcquireSkel<'obj>, String> {
    let btf = Btf::from_vmlinux().map_err(|e| format!("no kernel BTF: {e}"))?;
    libbpf_log::capture();
    let mut open = AcquireSkelBuilder::default().open(object).map_err(libbpf_log::explain)?;
    let mut primitives = 0;
    let lifetimes = s.lifetimes.kept_in(Mode::Acquire);
    for mut prog in open.open_object_mut().progs_mut() {
        let section = prog.section().to_string_lossy().into_owned();
        let (Some(function), Some(f)) = (target_of(&section), Family::of(&section)) else {
            continue; // fork/exit tracking
        };
        let role = primitives::role_of(function);
        let class = role.and_then(Role::class);
        let unlock = matches!(role, Some(Role::Release(_)));
        let ends_lives = matches!(role, Some(Role::Init | Role::Free));
        let wanted =
            f == family && class.is_none_or(|c| s.lock_classes.contains(&c)) && (s.hold_times || !unlock) && (lifetimes || !ends_lives);
        let present = match section.starts_with("raw_tp/") {
            true => btf.type_by_name::<Typedef>(&format!("btf_trace_{function}")).is_some(),
            false => btf.type_by_name::<Func>(function).is_some(),
        };
        prog.set_autoload(wanted && present);
        if wanted && present && (section.starts_with("fexit") || section.starts_with("kretprobe")) {
            primitives += 1;
        }
    }
    if primitives == 0 {
        return Err("none of the requested lock primitives is a traceable function in this kernel's BTF".into());
    }
    let waits = has_contention_tracepoints(&btf);
    open.progs.lks_w_begin.set_autoload(waits);
    open.progs.lks_w_end.set_autoload(waits);
    open.maps.aggregates.set_max_entries(s.max_records).map_err(|e| e.to_string())?;
    open.maps.stacks.set_value_size(s.stack_depth.max(1) * 8).map_err(|e| e.to_string())?;
    if let Some(rodata) = open.maps.rodata_data.as_deref_mut() {
        rodata.stack_depth = s.stack_depth.max(1);
        rodata.capture_stacks = s.stack_depth > 0;
        rodata.track_holds = s.hold_times;
        rodata.stack_sample_every = if s.stack_sample > 1 { s.stack_sample } else { 0 };
        rodata.stack_sample_first = sampling::FIRST_STACKS;
        rodata.wait_classes = wait_classes(s.lock_classes);
        // The direct map and page array (the slab of a kfree'd object or of a lock).
        [rodata.page_offset_base_addr, rodata.vmemmap_base_addr, rodata.max_pfn_addr] = addresses_of(&kallsyms(), PAGE_SYMBOLS);
        // Trampoline programs may call kfuncs; kprobes may not.
        rodata.kmem_cache_kfunc = family == Family::Trampoline;
        // The preempt count (interrupt context, even without stacks; spinlock holders).
        locate_cpus!(rodata, Some(&btf));
    }
    let what = match family {
        Family::Trampoline => "fentry/fexit programs refused",
        Family::Kprobe => "kprobe programs refused",
    };
    open.load().map_err(|e| libbpf_log::explain(format!("{what}: {e}")))
}

fn attach_acquire<'a>(skel: &'a AcquireSkel<'a>, s: &Settings<'_>) -> Result<Kernel<'a>, RecordError> {
    let progs: Vec<ProgramMut<'_>> = skel.object().progs_mut().filter(|p| p.autoload()).collect();
    let sections: Vec<String> = progs.iter().map(|p| p.section().to_string_lossy().into_owned()).collect();
    let family = sections.iter().find_map(|s| Family::of(s)).unwrap_or(Family::Trampoline);
    let mut attached: Vec<String> =
        sections.iter().filter(|s| Family::of(s).is_some()).filter_map(|s| target_of(s).map(str::to_owned)).collect();
    attached.sort();
    attached.dedup();
    let waits = skel.progs.lks_w_begin.autoload();
    if waits {
        attached.extend(["lock:contention_begin".to_owned(), "lock:contention_end".to_owned()]);
    }
    let (links, fds) = attach_all(&progs)?;
    let mut notes = vec![];
    if !waits {
        notes.push("waits not timed: this kernel has no lock:contention tracepoints (before 5.19)".into());
    }
    if !s.lifetimes.kept_in(Mode::Acquire) {
        notes.push(LIFETIMES_NOT_KEPT.into());
    } else if !attached.iter().any(|f| f == "__raw_spin_lock_init") {
        let frees: Vec<&str> = attached.iter().map(String::as_str).filter(|f| is_free(f)).collect();
        notes.push(if frees.is_empty() {
            "spinlock and rwlock initialisation are not functions on this kernel (no CONFIG_DEBUG_SPINLOCK): \
             a reused spinlock address is not told apart from the lock it replaced"
                .to_owned()
        } else {
            format!(
                "spinlock and rwlock initialisation are not functions on this kernel (no CONFIG_DEBUG_SPINLOCK): \
                 a lock address starts a new generation when the slab object holding it is freed ({}); \
                 reuse after page frees is not told apart{}",
                frees.join(", "),
                match family {
                    // The kernel runs one kprobe program at a time per CPU.
                    Family::Kprobe =>
                        "; with kprobes, bulk frees in an interrupt that lands inside another probe are \
                                       skipped by the kernel (single frees come from tracepoints, which still run)",
                    Family::Trampoline => "",
                }
            )
        });
    }
    let preempt_count_known = skel.maps.rodata_data.is_some_and(|r| r.preempt_count_located);
    if preempt_count_known {
        notes.push("interrupt context read from the preempt count".into());
    }
    if s.stack_depth > 0 && s.stack_sample > 1 {
        notes.push(format!(
            "stacks sampled: each of a lock's first {} acquisitions by a process, then one in {}; \
             counts per lock are exact, counts per call site are shared out in proportion to the samples",
            sampling::FIRST_STACKS,
            s.stack_sample
        ));
    }
    if !s.hold_times {
        notes.push("recorded without hold times: the unlock functions were not probed".into());
    }
    if s.stack_depth == 0 {
        notes.push(match preempt_count_known {
            true => "recorded without stacks: no call sites".into(),
            false => "recorded without stacks: no call sites, and interrupt context cannot be recognised".into(),
        });
    }
    let maps = Maps { holders: waits.then_some(&skel.maps.holder_waits as &dyn MapCore), ..common_maps!(skel.maps) };
    Ok(Kernel { maps, mode: Mode::Acquire, hook: family.hook_name().into(), attached, notes, progs: fds, links })
}

/// Whether the kernel has lock:contention_begin and _end (5.19+), by their BTF.
fn has_contention_tracepoints(btf: &Btf<'_>) -> bool {
    ["btf_trace_contention_begin", "btf_trace_contention_end"].iter().all(|t| btf.type_by_name::<Typedef>(t).is_some())
}

/// The kernel's symbols as text, for the data symbols' addresses the
/// programs are told (listed with KALLSYMS_ALL, shown to root; 0 where not).
fn kallsyms() -> String {
    std::fs::read_to_string("/proc/kallsyms").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_name_their_target() {
        assert_eq!(target_of("fexit/_raw_spin_lock"), Some("_raw_spin_lock"));
        assert_eq!(target_of("raw_tp/kfree"), Some("kfree"));
    }

    #[test]
    fn slab_free_tracepoints_belong_to_the_kprobe_family_and_fork_tracking_to_both() {
        assert!(Family::of("fentry/kmem_cache_free") == Some(Family::Trampoline));
        assert!(Family::of("kretprobe/mutex_lock") == Some(Family::Kprobe));
        assert!(Family::of("raw_tp/kfree") == Some(Family::Kprobe));
        assert!(Family::of("raw_tp/kmem_cache_free") == Some(Family::Kprobe));
        assert!(Family::of("raw_tp/sched_process_fork").is_none());
    }
}
