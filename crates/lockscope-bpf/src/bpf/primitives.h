/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel functions acquire mode probes, one per line, read by both
 * sides: acquire.bpf.c defines the four macros and includes this file, so
 * each line becomes its programs; the loader (src/primitives.rs) reads each
 * probed function's role and lock class from the same lines.
 *
 *   ACQUIRE(function, kind, outcome)  a lock primitive (the paper's Table 3)
 *   RELEASE(function, kind)           an unlock (hold times)
 *   INIT(function)                    a lock initialisation: the address holds a new lock
 *   FREE(function, how)               a slab free: the locks inside the object end
 *
 * kind: SPIN, RLOCK, WLOCK (spinlocks, rwlocks), MUTEX, RTMUTEX (mutexes),
 * RSEM, WSEM (rw_semaphores). outcome: when the call took the lock.
 * how: FENTRY (a program per line) or BY_HAND (written out in acquire.bpf.c).
 */

/* Table 3: spinlocks */
ACQUIRE(_raw_spin_lock, SPIN, ALWAYS)
ACQUIRE(_raw_spin_lock_irqsave, SPIN, ALWAYS)
ACQUIRE(_raw_spin_lock_irq, SPIN, ALWAYS)
ACQUIRE(_raw_spin_lock_bh, SPIN, ALWAYS)
ACQUIRE(_raw_spin_trylock, SPIN, NONZERO_OK)
ACQUIRE(_raw_spin_trylock_bh, SPIN, NONZERO_OK)
ACQUIRE(_raw_spin_lock_nested, SPIN, ALWAYS)
ACQUIRE(_raw_spin_lock_irqsave_nested, SPIN, ALWAYS)
RELEASE(_raw_spin_unlock, SPIN)
RELEASE(_raw_spin_unlock_irqrestore, SPIN)
RELEASE(_raw_spin_unlock_irq, SPIN)
RELEASE(_raw_spin_unlock_bh, SPIN)

/* Table 3: reader-writer spinlocks */
ACQUIRE(_raw_read_lock, RLOCK, ALWAYS)
ACQUIRE(_raw_write_lock, WLOCK, ALWAYS)
ACQUIRE(_raw_read_lock_bh, RLOCK, ALWAYS)
ACQUIRE(_raw_write_lock_bh, WLOCK, ALWAYS)
ACQUIRE(_raw_read_lock_irq, RLOCK, ALWAYS)
ACQUIRE(_raw_write_lock_irq, WLOCK, ALWAYS)
ACQUIRE(_raw_read_lock_irqsave, RLOCK, ALWAYS)
ACQUIRE(_raw_write_lock_irqsave, WLOCK, ALWAYS)
ACQUIRE(_raw_read_trylock, RLOCK, NONZERO_OK)
ACQUIRE(_raw_write_trylock, WLOCK, NONZERO_OK)
ACQUIRE(_raw_write_lock_nested, WLOCK, ALWAYS)
RELEASE(_raw_read_unlock, RLOCK)
RELEASE(_raw_write_unlock, WLOCK)
RELEASE(_raw_read_unlock_bh, RLOCK)
RELEASE(_raw_write_unlock_bh, WLOCK)
RELEASE(_raw_read_unlock_irq, RLOCK)
RELEASE(_raw_write_unlock_irq, WLOCK)
RELEASE(_raw_read_unlock_irqrestore, RLOCK)
RELEASE(_raw_write_unlock_irqrestore, WLOCK)

/* Table 3: mutexes */
ACQUIRE(mutex_lock, MUTEX, ALWAYS)
ACQUIRE(mutex_lock_nested, MUTEX, ALWAYS)
ACQUIRE(mutex_lock_interruptible, MUTEX, ZERO_OK)
ACQUIRE(mutex_lock_interruptible_nested, MUTEX, ZERO_OK)
ACQUIRE(mutex_lock_killable, MUTEX, ZERO_OK)
ACQUIRE(mutex_lock_killable_nested, MUTEX, ZERO_OK)
ACQUIRE(mutex_trylock, MUTEX, NONZERO_OK)
ACQUIRE(rt_mutex_lock, RTMUTEX, ALWAYS)
ACQUIRE(rt_mutex_lock_nested, RTMUTEX, ALWAYS)
ACQUIRE(rt_mutex_trylock, RTMUTEX, NONZERO_OK)
RELEASE(mutex_unlock, MUTEX)
RELEASE(rt_mutex_unlock, RTMUTEX)

/* Table 3: semaphores (rw_semaphore) */
ACQUIRE(down_read, RSEM, ALWAYS)
ACQUIRE(down_write, WSEM, ALWAYS)
ACQUIRE(down_read_trylock, RSEM, NONZERO_OK)
ACQUIRE(down_write_trylock, WSEM, NONZERO_OK)
ACQUIRE(down_read_nested, RSEM, ALWAYS)
ACQUIRE(down_write_nested, WSEM, ALWAYS)
ACQUIRE(down_read_killable, RSEM, ZERO_OK)
ACQUIRE(down_write_killable, WSEM, ZERO_OK)
ACQUIRE(down_read_killable_nested, RSEM, ZERO_OK)
ACQUIRE(down_write_killable_nested, WSEM, ZERO_OK)
ACQUIRE(down_read_interruptible, RSEM, ZERO_OK)
RELEASE(up_read, RSEM)
RELEASE(up_write, WSEM)

/* Lock initialisation: a reused address becomes a new lock. Spinlock and
 * rwlock init are functions only under CONFIG_DEBUG_SPINLOCK. */
INIT(__mutex_init)
INIT(__init_rwsem)
INIT(__rt_mutex_init)
INIT(__raw_spin_lock_init)
INIT(__rwlock_init)

/* Slab frees: kmem_cache_free, and kfree's __kmem_cache_free (6.1; a kernel
 * without it frees kmalloc objects unseen), and bulk frees (kfree_rcu's
 * batches, through kfree_bulk). Page frees are not walked. kfree's own
 * tracepoint serves the kprobe family (see acquire.bpf.c). */
FREE(kmem_cache_free, FENTRY)
FREE(__kmem_cache_free, FENTRY)
FREE(kmem_cache_free_bulk, BY_HAND)
FREE(kfree, BY_HAND)

