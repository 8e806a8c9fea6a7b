//! What the programs need to see what runs on the CPUs, for a spinlock's
//! holder and for interrupt context (src/bpf/waits.bpf.h): how many CPUs
//! there may be, and where a CPU's preempt count lies from its `runqueues`. Both are per-CPU
//! variables, at offsets in a CPU's per-CPU area that BTF lists, so one CPU's
//! runqueue address gives its preempt count without the data symbols
//! kallsyms lacks on kernels built without KALLSYMS_ALL.

use libbpf_rs::btf::types::{DataSec, MemberAttr, Struct, Var};
use libbpf_rs::btf::{Btf, BtfType, ReferencesType};

/// The CPUs a program may run on (possible CPUs, as per-CPU maps count them).
pub fn possible() -> u32 {
    libbpf_rs::num_possible_cpus().map_or(0, |n| n as u32)
}

/// The preempt count's offset from `runqueues` in every CPU's per-CPU area:
/// `__preempt_count` (x86 before 6.2, and again from 6.15) or the
/// `preempt_count` member of `pcpu_hot` (6.2 to 6.14). None when BTF lists
/// neither, or when the programs cannot reach a CPU's runqueue: they read it
/// from the running task's scheduling entity (`se.cfs_rq->rq`, under
/// CONFIG_FAIR_GROUP_SCHED), so without that member the offset serves
/// nothing and neither interrupt context nor spinlock holders are read.
pub fn preempt_count_from_runqueues(btf: &Btf<'_>) -> Option<i64> {
    let entity = btf.type_by_name::<Struct>("sched_entity")?;
    entity.iter().find(|m| m.name.is_some_and(|n| n == "cfs_rq"))?;
    let percpu = btf.type_by_name::<DataSec>(".data..percpu")?;
    let offset_of = |name: &str| {
        percpu.iter().find_map(|v| {
            let var = btf.type_by_id::<Var>(v.ty)?;
            (var.name()? == name).then_some((v.offset, var))
        })
    };
    let (runqueues, _) = offset_of("runqueues")?;
    let preempt_count = match offset_of("__preempt_count") {
        Some((offset, _)) => offset,
        None => {
            let (offset, hot) = offset_of("pcpu_hot")?;
            offset + member_offset(hot.referenced_type(), "preempt_count")?
        }
    };
    Some(i64::from(preempt_count) - i64::from(runqueues))
}

/// The byte offset of `member` in the struct `ty`.
fn member_offset(ty: BtfType<'_>, member: &str) -> Option<u32> {
    let st = Struct::try_from(ty.skip_mods_and_typedefs()).ok()?;
    let found = st.iter().find(|m| m.name.is_some_and(|n| n == member))?;
    match found.attr {
        MemberAttr::Normal { offset } => Some(offset / 8),
        MemberAttr::BitField { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This kernel's BTF, as the recorder reads it, against lockscope's own
    /// BTF reader (the naming stage's): the same variables, the same offset.
    #[test]
    fn the_preempt_count_is_found_from_the_runqueues_in_this_kernel_s_btf() {
        let offset = preempt_count_from_runqueues(&Btf::from_vmlinux().expect("kernel BTF")).expect("located");
        let btf = lockscope_naming::Btf::vmlinux().unwrap();
        let (vars, _) = btf.percpu_variables();
        let var = |name: &str| vars.iter().find(|(n, ..)| *n == name).map(|&(_, ty, offset, _)| (ty, i64::from(offset)));
        let (_, runqueues) = var("runqueues").unwrap();
        let preempt_count = var("__preempt_count")
            .map(|(_, offset)| offset)
            .or_else(|| var("pcpu_hot").map(|(ty, offset)| offset + i64::from(btf.offset_of(ty, "preempt_count").unwrap())))
            .unwrap();
        assert_eq!(offset, preempt_count - runqueues);
        assert!(possible() >= std::thread::available_parallelism().unwrap().get() as u32);
    }
}
