//! A lock in the kernel image, named from the data symbol that holds it
//! (kallsyms lists data symbols on kernels with CONFIG_KALLSYMS_ALL): the
//! variable itself at offset 0, else a member of it where BTF gives the
//! variable's type, else the variable and the offset.

use lockscope_trace::kallsyms::variable_at;
use lockscope_trace::{Confidence, LockKind};

use crate::btf::Btf;
use crate::locks::lock_in;

/// A lock named in a global variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalName {
    /// `inode_hash_lock`; `mem_hotplug_lock+0x8` where no type says more.
    pub variable: String,
    /// The variable's type and the lock's path in it, where BTF has them.
    pub member: Option<(String, String)>,
    pub confidence: Confidence,
}

/// Names the lock of `kind` at `offset` bytes into the data symbol `symbol`.
pub fn name_in_global(btf: &Btf, symbol: &str, offset: u64, kind: LockKind) -> GlobalName {
    let typed = btf.variable(symbol).and_then(|ty| {
        let member = lock_in(btf, ty, u32::try_from(offset).ok()?, kind)?;
        let object = btf.type_name(btf.resolve(ty))?.to_owned();
        (!member.is_empty()).then_some((object, member))
    });
    let (variable, confidence) = match (offset, &typed) {
        (0, _) | (_, Some(_)) => (symbol.to_owned(), Confidence::Exact),
        // Somewhere inside it: which member, BTF does not say.
        _ => (variable_at(symbol, offset), Confidence::Inferred),
    };
    GlobalName { variable, member: typed, confidence }
}
