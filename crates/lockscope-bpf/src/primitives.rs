//! The kernel functions acquire mode probes, read from the table the BPF
//! programs are generated from (src/bpf/primitives.h): each function's role
//! and lock class come from the line that made its programs.

use crate::recorder::LockClass;

const TABLE: &str = include_str!("bpf/primitives.h");

/// What a probed function does to a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Takes a lock of the class (the paper's Table 3).
    Acquire(LockClass),
    /// Releases one (hold times).
    Release(LockClass),
    /// Initialises a lock: the address holds a new one.
    Init,
    /// Frees a slab object: the locks inside it end.
    Free,
}

impl Role {
    /// The lock class whose recording needs the function; None for the
    /// functions that begin or end a lock's life, always probed.
    pub fn class(self) -> Option<LockClass> {
        match self {
            Role::Acquire(class) | Role::Release(class) => Some(class),
            Role::Init | Role::Free => None,
        }
    }
}

/// The class a table `kind` (the lock flags the programs record) belongs to.
fn class_of_kind(kind: &str) -> Option<LockClass> {
    Some(match kind {
        "SPIN" => LockClass::Spinlock,
        "RLOCK" | "WLOCK" => LockClass::Rwlock,
        "MUTEX" | "RTMUTEX" => LockClass::Mutex,
        "RSEM" | "WSEM" => LockClass::Rwsem,
        _ => return None,
    })
}

/// The table's entries, in its order: (function, role).
pub fn table() -> impl Iterator<Item = (&'static str, Role)> {
    TABLE.lines().filter_map(|line| {
        let (entry, rest) = line.trim().split_once('(')?;
        let args: Vec<&str> = rest.strip_suffix(')')?.split(',').map(str::trim).collect();
        let class = || class_of_kind(args.get(1)?);
        let role = match entry {
            "ACQUIRE" => Role::Acquire(class()?),
            "RELEASE" => Role::Release(class()?),
            "INIT" => Role::Init,
            "FREE" => Role::Free,
            _ => return None,
        };
        Some((args[0], role))
    })
}

/// The role of the kernel function `function` (or tracepoint of that name), if probed.
pub fn role_of(function: &str) -> Option<Role> {
    table().find(|&(f, _)| f == function).map(|(_, role)| role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_each_function_its_role_and_class() {
        assert_eq!(role_of("_raw_spin_lock_irqsave"), Some(Role::Acquire(LockClass::Spinlock)));
        assert_eq!(role_of("_raw_spin_unlock_bh"), Some(Role::Release(LockClass::Spinlock)));
        assert_eq!(role_of("_raw_write_lock_nested"), Some(Role::Acquire(LockClass::Rwlock)));
        assert_eq!(role_of("mutex_lock_interruptible"), Some(Role::Acquire(LockClass::Mutex)));
        assert_eq!(role_of("rt_mutex_unlock"), Some(Role::Release(LockClass::Mutex)));
        assert_eq!(role_of("down_read_killable"), Some(Role::Acquire(LockClass::Rwsem)));
        assert_eq!(role_of("up_write"), Some(Role::Release(LockClass::Rwsem)));
        assert_eq!(role_of("__mutex_init"), Some(Role::Init));
        assert_eq!(role_of("__raw_spin_lock_init"), Some(Role::Init));
        for free in ["kmem_cache_free", "__kmem_cache_free", "kmem_cache_free_bulk", "kfree"] {
            assert_eq!(role_of(free), Some(Role::Free), "{free}");
        }
        assert_eq!(role_of("sched_process_fork"), None);
        // Every line of the table is read: the paper's Table 3 and the lifetimes.
        let acquires = table().filter(|(_, r)| matches!(r, Role::Acquire(_))).count();
        let entries = TABLE.lines().filter(|l| ["ACQUIRE(", "RELEASE(", "INIT(", "FREE("].iter().any(|m| l.starts_with(m))).count();
        assert_eq!(table().count(), entries, "a line of the table was not understood");
        assert_eq!(acquires, 40);
    }

    #[test]
    fn every_probe_program_is_generated_from_a_table_line() {
        use libbpf_rs::skel::{OpenSkel, SkelBuilder};
        let mut object = std::mem::MaybeUninit::uninit();
        let mut open = crate::acquire_skel::AcquireSkelBuilder::default().open(&mut object).expect("the object opens without a kernel");
        let mut probed = std::collections::BTreeSet::new();
        for prog in open.open_object_mut().progs_mut() {
            let section = prog.section().to_string_lossy().into_owned();
            let (hook, target) = section.split_once('/').unwrap();
            if matches!(hook, "fentry" | "fexit" | "kprobe" | "kretprobe") {
                assert!(role_of(target).is_some(), "{section} is not in primitives.h");
                probed.insert(target.to_owned());
            }
        }
        for (function, _) in table().filter(|&(f, _)| f != "kfree") {
            assert!(probed.contains(function), "{function} has no program"); // kfree: its tracepoint only
        }
    }
}
