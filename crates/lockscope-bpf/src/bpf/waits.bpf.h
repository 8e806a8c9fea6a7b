/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Waits for a lock, timed from lock:contention_begin to contention_end (the
 * slow path of every kernel lock), and who held the lock meanwhile: both
 * recorders include this.
 *
 * Where the lock word names its owner (a mutex; a writer-held rwsem), the
 * wait is attributed to the owner's process, as `perf lock contention
 * --lock-owner` reads it: who made whom wait (`holder_waits`). A spinlock's
 * word names no owner, but its holder cannot sleep or be preempted: it is
 * running, with preemption disabled, on another CPU (spin_holder).
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

static __always_inline struct holder holder_named(u32 tgid)
{
	struct holder h = { .tgid = tgid };
	u32 *w = bpf_map_lookup_elem(&tracked_tgids, &tgid);
	h.workload = w ? *w : 0;
	return h;
}

/* Set by user space: the CPUs there may be, and where a CPU's preempt count
 * lies from its runqueues (both per-CPU variables, at offsets BTF lists). */
const volatile u32 nr_cpus = 0;
const volatile s64 preempt_count_from_rq = 0;
const volatile bool preempt_count_located = false;

struct rq {
	struct task_struct *curr;
} __attribute__((preserve_access_index));

/* The search for a spinlock's holder over the other CPUs. */
struct spin_search {
	u32 self;       /* the waiter's CPU */
	u32 tgid;       /* the process every candidate belongs to */
	u32 candidates; /* CPUs that may be holding the lock */
	u32 others;     /* other CPUs read */
	u32 last_tgid;  /* the process the last of them runs, 0: the idle task */
	u32 unknown;    /* 0, or why a CPU can be neither ruled out nor named: C_HOLDER_UNSEEN or _AMBIGUOUS */
};

/* A CPU's runqueue, 0 until noted. */
static __always_inline u64 runqueue_of(u32 cpu)
{
	u64 *rq = bpf_map_lookup_elem(&percpu_runqueues, &cpu);
	return rq ? *rq : 0;
}

/* The preempt count of the CPU whose runqueue is `rq`; false when either is
 * unknown. */
static __always_inline bool preempt_count_at(u64 rq, u32 *preempt_count)
{
	return preempt_count_located && rq &&
	       !bpf_probe_read_kernel(preempt_count, sizeof(*preempt_count), (void *)(rq + preempt_count_from_rq));
}

/* LKS_F_INTERRUPT when this CPU serves an interrupt (a bh-disabled section
 * is not one): a lock taken or waited for there is the interrupt's, not the
 * interrupted task's. 0 when unknown. */
static __always_inline u32 interrupt_here(void)
{
	u32 preempt_count = 0;
	if (!preempt_count_at(this_runqueue(), &preempt_count))
		return 0;
	return preempt_count & IN_INTERRUPT ? LKS_F_INTERRUPT : 0;
}

/* One CPU: a candidate when it runs a task (not an interrupt) with
 * preemption disabled, which every spinlock holder has. */
static long search_cpu(u64 cpu, struct spin_search *s)
{
	if (cpu == s->self)
		return 0;
	u64 rq = runqueue_of(cpu);
	u32 preempt_count = 0;
	if (!preempt_count_at(rq, &preempt_count) || (preempt_count & IN_INTERRUPT)) {
		s->unknown = C_HOLDER_UNSEEN; /* a CPU not seen yet, or an interrupt that may be the holder */
		return 1;
	}
	struct task_struct *task = BPF_CORE_READ((struct rq *)rq, curr);
	u32 tgid = BPF_CORE_READ(task, tgid);
	bool idle = !BPF_CORE_READ(task, pid);
	s->others++;
	s->last_tgid = idle ? 0 : tgid;
	if (!(preempt_count & PREEMPT_MASK))
		return 0;
	if (idle || (s->candidates && tgid != s->tgid)) {
		s->unknown = C_HOLDER_AMBIGUOUS; /* the idle task (the kernel's, in its scheduling), or two processes */
		return 1;
	}
	s->tgid = tgid;
	s->candidates++;
	return 0;
}

/* Whether the spinlock or rwlock at `lock` is still held (qspinlock: the
 * locked byte; qrwlock: the writer byte or a reader count above the
 * waiting bit). */
static __always_inline bool spin_held(u64 lock, u32 flags)
{
	u32 val = 0;
	if (bpf_probe_read_kernel(&val, sizeof(val), (void *)lock))
		return false;
	if (flags & (LCB_F_READ | LCB_F_WRITE))
		return (val & 0xff) || (val >> 9);
	return val & 0xff;
}

/* A spinlock's holder. The lock word is read on both sides of reading the
 * other CPUs: held at both, it was held meanwhile by what ran there (a
 * switch away and back between the reads aside). The holder's process is
 * the one process running there with preemption disabled, or, where the
 * holder let go and took the lock again in between, the process on the
 * only other CPU. tgid 0 when the lock was free at either read or a CPU
 * cannot be ruled out (an interrupt, the idle task, two processes, a CPU
 * not yet seen). */
static __always_inline struct holder spin_holder(u64 lock, u32 flags)
{
	struct holder none = {};
	if (!preempt_count_located || !nr_cpus)
		return none;
	if (!spin_held(lock, flags)) {
		count(C_HOLDER_RELEASED);
		return none;
	}
	struct spin_search s = { .self = bpf_get_smp_processor_id() };
	bpf_loop(nr_cpus < MAX_CPUS ? nr_cpus : MAX_CPUS, search_cpu, &s, 0);
	if (s.unknown) {
		count(s.unknown);
		return none;
	}
	if (!spin_held(lock, flags)) {
		count(C_HOLDER_RELEASED);
		return none;
	}
	if (s.candidates)
		return holder_named(s.tgid);
	if (s.others == 1 && s.last_tgid)
		return holder_named(s.last_tgid);
	count(C_HOLDER_AMBIGUOUS);
	return none;
}

/* Who holds `lock` as the wait begins; tgid 0 where it cannot be told
 * (reader-held rwsems, a lock released meanwhile, see spin_holder). */
static __always_inline struct holder holder_of(u64 lock, u32 flags)
{
	struct holder none = {};
	long owner;
	if (flags & LCB_F_MUTEX) { /* its optimistic spin too (LCB_F_SPIN with it) */
		owner = BPF_CORE_READ((struct mutex *)lock, owner.counter);
	} else if (flags & (LCB_F_PERCPU | LCB_F_RT)) {
		return none;
	} else if (flags & LCB_F_SPIN) {
		return spin_holder(lock, flags);
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
	return holder_named(BPF_CORE_READ(task, tgid));
}

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct holder_key);
	__type(value, struct holder_val);
} holder_waits SEC(".maps");

static __always_inline void note_holder(u32 waiter, struct holder holder, u32 flags, u64 lock, u64 wait_ns)
{
	struct holder_key key = { .waiter = waiter, .holder = holder, .flags = flags & LKS_F_INTERRUPT, .lock = lock };
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
	/* The holder first, while it is most likely still holding the lock. */
	flags |= interrupt_here(); /* notes this CPU's runqueue for spin_holder on the others too */
	struct holder holder = holder_of(lock, flags);

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
		ws->slot[i].holder = holder;
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
		note_holder(workload, done->holder, done->flags, lock, *wait_ns);
		return true;
	}
	count(C_UNMATCHED_END);
	return false;
}

#endif
