//! Which kernel types are locks, and the lock member that starts at an
//! offset of an object.

use lockscope_trace::LockKind;

use crate::btf::{Btf, Type, TypeId};

/// The types a lock of `kind` is declared as, by the name BTF knows them
/// by (a struct's tag or a typedef's name). The contention tracepoints and
/// the lock primitives see the address of the lock itself, where these start.
fn types_of(kind: LockKind) -> &'static [&'static str] {
    match kind {
        LockKind::Spinlock => &["spinlock_t", "spinlock", "raw_spinlock_t", "raw_spinlock", "arch_spinlock_t", "qspinlock"],
        LockKind::RwlockRead | LockKind::RwlockWrite => &["rwlock_t", "arch_rwlock_t", "qrwlock"],
        LockKind::Mutex => &["mutex"],
        LockKind::RtMutex => &["rt_mutex", "rt_mutex_base"],
        LockKind::RwsemRead | LockKind::RwsemWrite => &["rw_semaphore"],
        LockKind::PercpuRwsemRead | LockKind::PercpuRwsemWrite => &["percpu_rw_semaphore"],
        LockKind::Semaphore => &["semaphore"],
    }
}

/// Whether a member declared with type `ty` is a lock of `kind`: its type
/// as written (`spinlock_t`) or under its typedefs (`struct spinlock`).
fn is_lock(btf: &Btf, mut ty: TypeId, kind: LockKind) -> bool {
    let wanted = types_of(kind);
    for _ in 0..16 {
        if btf.type_name(ty).is_some_and(|n| wanted.contains(&n)) {
            return true;
        }
        match btf.get(ty) {
            Type::Typedef { ty: next, .. } | Type::Qualified(next) => ty = *next,
            _ => return false,
        }
    }
    false
}

/// The member of `object` that is a lock of `kind` starting at byte
/// `offset`, as a path (`vfs_inode.i_data.i_private_lock`,
/// `node_zones[1].lock`): the outermost such member, so a spinlock is named
/// and not the raw spinlock inside it. Overlapping union members are each
/// tried. None when no lock of that kind starts there.
pub fn lock_at(btf: &Btf, object: TypeId, offset: u32, kind: LockKind) -> Option<String> {
    search(btf, object, offset, kind, 0)
}

/// As [`lock_at`], but where `ty` is itself a lock of `kind` at offset 0
/// (a per-CPU `spinlock_t`), the empty path.
pub fn lock_in(btf: &Btf, ty: TypeId, offset: u32, kind: LockKind) -> Option<String> {
    match offset == 0 && is_lock(btf, ty, kind) {
        true => Some(String::new()),
        false => lock_at(btf, ty, offset, kind),
    }
}

fn search(btf: &Btf, ty: TypeId, offset: u32, kind: LockKind, depth: u32) -> Option<String> {
    if depth > 32 {
        return None;
    }
    for (component, member, rest) in btf.members_covering(ty, offset) {
        let found = match rest == 0 && is_lock(btf, member, kind) {
            true => Some(String::new()),
            false => search(btf, member, rest, kind, depth + 1),
        };
        if let Some(inner) = found {
            return Some(join(&component, &inner));
        }
    }
    None
}

/// `a` + `b`, `a` + `.b`, `a` + `[1].b`: a member path from its parts, where
/// anonymous members (empty components) add nothing.
fn join(component: &str, inner: &str) -> String {
    match (component, inner) {
        ("", inner) => inner.to_owned(),
        (c, "") => c.to_owned(),
        (c, inner) if inner.starts_with('[') => format!("{c}{inner}"),
        (c, inner) => format!("{c}.{inner}"),
    }
}

/// The ways a lock at member `path` of `object` can be spelled, outermost
/// first: from the object, and from each named struct it is embedded in on
/// the way (`bdev_inode.vfs_inode.i_data.i_private_lock`,
/// `inode.i_data.i_private_lock`, `address_space.i_private_lock`). The
/// static analyzer names a lock by the struct its expression reaches, one of
/// these.
pub fn spellings(btf: &Btf, object: TypeId, path: &str) -> Vec<String> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut out = vec![];
    for i in 0..parts.len() {
        let holder = match i {
            0 => Some(object),
            // Arrays are indexed in the part itself: the element's type holds the rest.
            _ => btf.type_at(object, &parts[..i].join(".")).map(|t| element_type(btf, t)),
        };
        // By the struct's tag and by each typedef of it (`journal_s`, `journal_t`).
        let Some(holder) = holder.map(|t| btf.resolve(t)) else { continue };
        for name in btf.type_name(holder).into_iter().chain(btf.typedefs_of(holder).iter().map(String::as_str)) {
            out.push(format!("{name}.{}", parts[i..].join(".")));
        }
    }
    out
}

/// An array's element type (through typedefs), or the type itself.
fn element_type(btf: &Btf, ty: TypeId) -> TypeId {
    match btf.get(btf.resolve(ty)) {
        Type::Array { elem, .. } => element_type(btf, *elem),
        _ => ty,
    }
}
