//! A lock in a per-CPU variable, named: each CPU's per-CPU area begins where
//! its `runqueues` lies minus that variable's offset (both known: the
//! recorder noted the first, BTF gives the second), so an address inside an
//! area is a variable and an offset, and BTF names the member there.

use lockscope_trace::LockKind;

use crate::btf::Btf;
use crate::locks::lock_in;

/// A lock named in a per-CPU variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PercpuName {
    pub variable: String,
    /// The variable's type (`rq`), when it is a struct.
    pub object: Option<String>,
    /// The lock's member path in it; empty when the variable is the lock.
    pub member: String,
}

/// Names the lock at `lock_addr` if it lies in the static per-CPU variables
/// of a CPU whose `runqueues` address is known (`runqueues[cpu]`, 0 when not).
pub fn name_in_percpu(btf: &Btf, lock_addr: u64, runqueues: &[u64], kind: LockKind) -> Option<PercpuName> {
    let (vars, area_size) = btf.percpu_variables();
    let &(_, _, rq_offset, _) = vars.iter().find(|(name, ..)| *name == "runqueues")?;
    let offset = runqueues.iter().filter(|&&a| a != 0).find_map(|&rq| {
        let base = rq.checked_sub(rq_offset as u64)?;
        let offset = lock_addr.checked_sub(base)?;
        (offset < area_size as u64).then_some(offset as u32)
    })?;
    let &(variable, ty, start, _) = vars.iter().find(|&&(_, _, start, size)| start <= offset && offset < start + size)?;
    let member = lock_in(btf, ty, offset - start, kind)?;
    let object = btf.type_name(btf.resolve(ty)).map(str::to_owned);
    Some(PercpuName { variable: variable.to_owned(), object, member })
}
