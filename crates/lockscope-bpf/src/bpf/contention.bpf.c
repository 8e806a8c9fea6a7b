// SPDX-License-Identifier: GPL-2.0
/*
 * lockscope contention recorder.
 *
 * lock:contention_begin/end fire in the slow path of every kernel lock. For
 * the workloads user space selected (by tgid, followed across fork, or by
 * cgroup) we time each wait and aggregate it in the kernel, keyed by
 * (workload, tgid, lock address, lock flags, kernel stack). Nothing is
 * streamed per event; everything not recorded is counted.
 *
 * Where the lock word names its owner (a mutex; a writer-held rwsem), the
 * wait is also attributed to the owner's process, as `perf lock contention
 * --lock-owner` reads it: who made whom wait (`holder_waits`).
 *
 * Interrupt context is recognised from the stack in user space (interrupt
 * entry frames), as the per-CPU preempt count is not reachable from BPF on
 * kernels without CONFIG_KALLSYMS_ALL. Interrupts nest inside a task's wait
 * but always complete first, and use their own slot (a different lock).
 */
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
	struct holder h = {};
	long owner;
	if (flags & LCB_F_MUTEX) {
		owner = BPF_CORE_READ((struct mutex *)lock, owner.counter);
	} else if (!(flags & (LCB_F_SPIN | LCB_F_PERCPU | LCB_F_RT)) && (flags & (LCB_F_READ | LCB_F_WRITE))) {
		owner = BPF_CORE_READ((struct rw_semaphore *)lock, owner.counter);
		if (owner & RWSEM_READER_OWNED)
			return h;
	} else {
		return h;
	}
	struct task_struct *task = (struct task_struct *)(owner & ~OWNER_FLAGS);
	if (!task)
		return h;
	h.tgid = BPF_CORE_READ(task, tgid);
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

static __always_inline int on_begin(void *ctx, u64 lock, u32 flags)
{
	u32 workload = current_workload();
	if (!workload)
		return 0;
	count(C_EVENTS);

	struct wait_state *ws = bpf_task_storage_get(&waits, bpf_get_current_task_btf(), 0,
						     BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!ws) {
		count(C_STATE_BUSY);
		return 0;
	}

	int free = -1;
	for (int i = 0; i < MAX_NESTING; i++) {
		if (ws->slot[i].lock == lock) {
			/* The same wait, entering its next phase (spin, then sleep). */
			ws->slot[i].flags |= flags;
			return 0;
		}
		if (!ws->slot[i].lock && free < 0)
			free = i;
	}
	if (free < 0) {
		count(C_NESTING_OVERFLOW);
		return 0;
	}

	s32 stack_id = capture_stack(ctx);

	for (int i = 0; i < MAX_NESTING; i++) {
		if (i != free)
			continue;
		ws->slot[i].stack_id = stack_id;
		ws->slot[i].flags = flags;
		ws->slot[i].holder = holder_of(lock, flags);
		ws->slot[i].start_ns = bpf_ktime_get_ns();
		ws->slot[i].lock = lock;
	}
	return 0;
}

static __always_inline int on_end(u64 lock)
{
	u32 workload = current_workload();
	if (!workload)
		return 0;

	struct wait_state *ws = bpf_task_storage_get(&waits, bpf_get_current_task_btf(), 0, 0);
	if (!ws) {
		count(C_UNMATCHED_END);
		return 0;
	}
	for (int i = 0; i < MAX_NESTING; i++) {
		struct wait_slot *s = &ws->slot[i];
		if (s->lock != lock)
			continue;
		struct agg_key key = {
			.workload = workload,
			.tgid = bpf_get_current_pid_tgid() >> 32,
			.lock = lock,
			.flags = s->flags,
			.stack_id = s->stack_id,
		};
		u64 now = bpf_ktime_get_ns();
		u64 wait_ns = now - s->start_ns;
		s->lock = 0;
		note_place(lock, key.generation);
		note_holder(workload, s->holder, lock, wait_ns);
		struct agg_val *v = agg_entry(&key, now);
		if (!v)
			return 0;
		__sync_fetch_and_add(&v->count, 1);
		__sync_fetch_and_add(&v->wait_total_ns, wait_ns);
		if (wait_ns > v->wait_max_ns)
			v->wait_max_ns = wait_ns;
		return 0;
	}
	count(C_UNMATCHED_END);
	return 0;
}

/* Preferred: BTF-typed tracepoints (args are the tracepoint's C arguments). */
SEC("tp_btf/contention_begin")
int lks_btf_begin(u64 *ctx)
{
	return on_begin(ctx, ctx[0], (u32)ctx[1]);
}

SEC("tp_btf/contention_end")
int lks_btf_end(u64 *ctx)
{
	return on_end(ctx[0]);
}

/* Fallback: the classic tracepoint, its record laid out as in the event's format file. */
struct contention_record {
	u64 common;
	u64 lock_addr;
	u32 flags_or_ret;
};

SEC("tracepoint/lock/contention_begin")
int lks_tp_begin(struct contention_record *rec)
{
	return on_begin(rec, rec->lock_addr, rec->flags_or_ret);
}

SEC("tracepoint/lock/contention_end")
int lks_tp_end(struct contention_record *rec)
{
	return on_end(rec->lock_addr);
}
