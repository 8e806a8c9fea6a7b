/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Waits for a lock, timed from lock:contention_begin to contention_end (the
 * slow path of every kernel lock), and who held the lock meanwhile: both
 * recorders include this.
 *
 * Where the lock word names its owner (a mutex; a writer-held rwsem), the
 * wait is attributed to the owner's process, as `perf lock contention
 * --lock-owner` reads it: who made whom wait (`holder_waits`).
 */
#ifndef LOCKSCOPE_WAITS_BPF_H
#define LOCKSCOPE_WAITS_BPF_H

#include "places.bpf.h"

struct wait_slot {
	u64 lock;
	u64 start_ns;
	u32 flags;
	s32 stack_id;
	struct holder holder;
};

typedef struct {
	long counter;
} atomic_long_t;

/* The owner word of the sleeping locks: a task pointer, flags in its low bits. */
struct mutex {
	atomic_long_t owner;
} __attribute__((preserve_access_index));

struct rw_semaphore {
	atomic_long_t owner;
} __attribute__((preserve_access_index));

#define OWNER_FLAGS 0x7UL        /* MUTEX_FLAGS, RWSEM_OWNER_FLAGS_MASK */
#define RWSEM_READER_OWNED 0x1UL /* held by readers: the word names only the last */

/* Who holds `lock` as the wait begins; tgid 0 where the lock word cannot
 * say (spinlocks, reader-held rwsems, a lock released meanwhile). */
static __always_inline struct holder holder_of(u64 lock, u32 flags)
{
	struct holder none = {};
	long owner;
	if (flags & LCB_F_MUTEX) { /* its optimistic spin too (LCB_F_SPIN with it) */
		owner = BPF_CORE_READ((struct mutex *)lock, owner.counter);
	} else if (flags & (LCB_F_SPIN | LCB_F_PERCPU | LCB_F_RT)) {
		return none;
	} else if (flags & (LCB_F_READ | LCB_F_WRITE)) {
		owner = BPF_CORE_READ((struct rw_semaphore *)lock, owner.counter);
		if (owner & RWSEM_READER_OWNED)
			return none;
	} else {
		return none;
	}
	struct task_struct *task = (struct task_struct *)(owner & ~OWNER_FLAGS);
	if (!task)
		return none;
	struct holder h = { .tgid = BPF_CORE_READ(task, tgid) };
	u32 *w = bpf_map_lookup_elem(&tracked_tgids, &h.tgid);
	h.workload = w ? *w : 0;
	return h;
}

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct holder_key);
	__type(value, struct holder_val);
} holder_waits SEC(".maps");

static __always_inline void note_holder(u32 waiter, struct holder holder, u64 lock, u64 wait_ns)
{
	struct holder_key key = { .waiter = waiter, .holder = holder, .lock = lock };
	struct holder_val zero = {};
	struct holder_val *v = lookup_or_insert(&holder_waits, &key, &zero, C_HOLDERS_FULL);
	if (!v)
		return;
	__sync_fetch_and_add(&v->count, 1);
	__sync_fetch_and_add(&v->wait_total_ns, wait_ns);
}

/* A task can wait on a few locks at once: a mutex's optimistic spin, then
 * its wait_lock, then the mutex again. One slot per lock in flight. */
struct wait_state {
	struct wait_slot slot[MAX_NESTING];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct wait_state);
} waits SEC(".maps");

/* A wait on `lock` begins (or enters its next phase); its stack
 * is kept when `with_stack`. */
static __always_inline void begin_wait(void *ctx, u64 lock, u32 flags, bool with_stack)
{
	struct wait_state *ws = bpf_task_storage_get(&waits, bpf_get_current_task_btf(), 0,
						     BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!ws) {
		count(C_STATE_BUSY);
		return;
	}

	int free = -1;
	for (int i = 0; i < MAX_NESTING; i++) {
		if (ws->slot[i].lock == lock) {
			/* The same wait, entering its next phase (spin, then sleep). */
			ws->slot[i].flags |= flags;
			return;
		}
		if (!ws->slot[i].lock && free < 0)
			free = i;
	}
	if (free < 0) {
		count(C_NESTING_OVERFLOW);
		return;
	}

	s32 stack_id = with_stack ? capture_stack(ctx) : -1;

	for (int i = 0; i < MAX_NESTING; i++) {
		if (i != free)
			continue;
		ws->slot[i].stack_id = stack_id;
		ws->slot[i].flags = flags;
		ws->slot[i].holder = holder_of(lock, flags);
		ws->slot[i].start_ns = bpf_ktime_get_ns();
		ws->slot[i].lock = lock;
	}
}

/* The wait on `lock` ends: its slot into *done, its length into *wait_ns,
 * and the wait attributed to the lock's holder. False (counted) when its
 * beginning was not seen. */
static __always_inline bool end_wait(u32 workload, u64 lock, struct wait_slot *done, u64 *wait_ns)
{
	struct wait_state *ws = bpf_task_storage_get(&waits, bpf_get_current_task_btf(), 0, 0);
	if (!ws) {
		count(C_UNMATCHED_END);
		return false;
	}
	for (int i = 0; i < MAX_NESTING; i++) {
		struct wait_slot *s = &ws->slot[i];
		if (s->lock != lock)
			continue;
		*done = *s;
		*wait_ns = bpf_ktime_get_ns() - s->start_ns;
		s->lock = 0;
		note_holder(workload, done->holder, lock, *wait_ns);
		return true;
	}
	count(C_UNMATCHED_END);
	return false;
}

#endif
