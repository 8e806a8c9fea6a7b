//! The kernel's lock types and the functions that acquire them.

use serde::Serialize;

/// The lock types the analyzer knows, by the name the kernel spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum LockType {
    #[serde(rename = "spinlock_t")]
    Spinlock,
    #[serde(rename = "raw_spinlock_t")]
    RawSpinlock,
    #[serde(rename = "rwlock_t")]
    Rwlock,
    #[serde(rename = "seqlock_t")]
    Seqlock,
    #[serde(rename = "struct mutex")]
    Mutex,
    #[serde(rename = "struct rt_mutex")]
    RtMutex,
    #[serde(rename = "struct rw_semaphore")]
    RwSemaphore,
    #[serde(rename = "struct semaphore")]
    Semaphore,
    #[serde(rename = "struct percpu_rw_semaphore")]
    PercpuRwSemaphore,
}

impl LockType {
    pub const ALL: [LockType; 9] = [
        LockType::Spinlock,
        LockType::RawSpinlock,
        LockType::Rwlock,
        LockType::Seqlock,
        LockType::Mutex,
        LockType::RtMutex,
        LockType::RwSemaphore,
        LockType::Semaphore,
        LockType::PercpuRwSemaphore,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LockType::Spinlock => "spinlock_t",
            LockType::RawSpinlock => "raw_spinlock_t",
            LockType::Rwlock => "rwlock_t",
            LockType::Seqlock => "seqlock_t",
            LockType::Mutex => "struct mutex",
            LockType::RtMutex => "struct rt_mutex",
            LockType::RwSemaphore => "struct rw_semaphore",
            LockType::Semaphore => "struct semaphore",
            LockType::PercpuRwSemaphore => "struct percpu_rw_semaphore",
        }
    }

    /// The lock type a type spelling names (`spinlock_t`, `struct spinlock`,
    /// `struct mutex *`, …), if any.
    pub fn from_type(ty: &str) -> Option<LockType> {
        match crate::ast::base_type_name(ty).as_str() {
            "spinlock_t" | "spinlock" => Some(LockType::Spinlock),
            "raw_spinlock_t" | "raw_spinlock" => Some(LockType::RawSpinlock),
            "rwlock_t" => Some(LockType::Rwlock),
            "seqlock_t" => Some(LockType::Seqlock),
            "mutex" => Some(LockType::Mutex),
            "rt_mutex" | "rt_mutex_base" => Some(LockType::RtMutex),
            "rw_semaphore" => Some(LockType::RwSemaphore),
            "semaphore" => Some(LockType::Semaphore),
            "percpu_rw_semaphore" => Some(LockType::PercpuRwSemaphore),
            _ => None,
        }
    }
}

/// Types that are parts of a lock's implementation: a member inside one of
/// these (`spinlock.rlock`, `mutex.wait_lock`) is the enclosing lock itself.
pub fn is_lock_internal_type(ty: &str) -> bool {
    LockType::from_type(ty).is_some()
        || matches!(crate::ast::base_type_name(ty).as_str(), "arch_spinlock_t" | "arch_rwlock_t" | "qspinlock" | "qrwlock")
}

/// Whether a line of source, read as text, calls an acquisition primitive.
pub fn line_calls_an_acquisition(line: &str) -> bool {
    line.split('(')
        .filter_map(|before| before.rsplit(|c: char| !(c.is_alphanumeric() || c == '_')).next())
        .any(|name| !name.is_empty() && acquisition(name).is_some())
}

/// Whether `function` acquires a lock (the paper's Table 3 and the inline and
/// macro forms that lead to it), and which type it takes.
pub fn acquisition(function: &str) -> Option<LockType> {
    let f = function.trim_start_matches('_');
    if f.contains("unlock") || f.contains("is_locked") || f.contains("lock_init") || f.starts_with("init") {
        return None;
    }
    const TABLE: [(&str, LockType); 22] = [
        ("raw_spin_lock", LockType::RawSpinlock),
        ("raw_spin_trylock", LockType::RawSpinlock),
        ("do_raw_spin_lock", LockType::RawSpinlock),
        ("spin_lock", LockType::Spinlock),
        ("spin_trylock", LockType::Spinlock),
        ("raw_read_lock", LockType::Rwlock),
        ("raw_write_lock", LockType::Rwlock),
        ("raw_read_trylock", LockType::Rwlock),
        ("raw_write_trylock", LockType::Rwlock),
        ("read_lock", LockType::Rwlock),
        ("write_lock", LockType::Rwlock),
        ("read_trylock", LockType::Rwlock),
        ("write_trylock", LockType::Rwlock),
        ("write_seqlock", LockType::Seqlock),
        ("read_seqlock_excl", LockType::Seqlock),
        ("mutex_lock", LockType::Mutex),
        ("mutex_trylock", LockType::Mutex),
        ("rt_mutex_lock", LockType::RtMutex),
        ("rt_mutex_trylock", LockType::RtMutex),
        ("percpu_down_read", LockType::PercpuRwSemaphore),
        ("percpu_down_write", LockType::PercpuRwSemaphore),
        ("percpu_down_read_trylock", LockType::PercpuRwSemaphore),
    ];
    if let Some((_, ty)) = TABLE.iter().find(|(prefix, _)| f.starts_with(prefix)) {
        return Some(*ty);
    }
    if f.starts_with("down_read") || f.starts_with("down_write") {
        return Some(LockType::RwSemaphore);
    }
    matches!(f, "down" | "down_interruptible" | "down_killable" | "down_trylock" | "down_timeout").then_some(LockType::Semaphore)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_are_recognised_with_their_type() {
        assert_eq!(acquisition("spin_lock_irqsave"), Some(LockType::Spinlock));
        assert_eq!(acquisition("_raw_spin_lock_irqsave"), Some(LockType::RawSpinlock));
        assert_eq!(acquisition("_raw_write_lock_irq"), Some(LockType::Rwlock));
        assert_eq!(acquisition("mutex_lock_interruptible"), Some(LockType::Mutex));
        assert_eq!(acquisition("down_write_killable"), Some(LockType::RwSemaphore));
        assert_eq!(acquisition("down"), Some(LockType::Semaphore));
        assert_eq!(acquisition("percpu_down_write"), Some(LockType::PercpuRwSemaphore));
        for not_a_lock in ["spin_unlock", "mutex_unlock", "up_write", "download", "spin_lock_init", "mutex_is_locked"] {
            assert_eq!(acquisition(not_a_lock), None, "{not_a_lock}");
        }
    }

    #[test]
    fn lock_types_are_read_from_any_spelling() {
        assert_eq!(LockType::from_type("spinlock_t"), Some(LockType::Spinlock));
        assert_eq!(LockType::from_type("struct spinlock *"), Some(LockType::Spinlock));
        assert_eq!(LockType::from_type("struct rw_semaphore"), Some(LockType::RwSemaphore));
        assert_eq!(LockType::from_type("struct fs_struct *"), None);
        assert!(is_lock_internal_type("arch_spinlock_t"));
    }
}
