// SPDX-License-Identifier: GPL-2.0
/*
 * lockscope acquire recorder: every acquisition of a kernel lock.
 *
 * fexit (or, where trampolines are refused, kprobe + kretprobe) on each lock
 * primitive of the paper's Table 3 sees the acquisition (and, for trylocks,
 * its failure); fentry on the unlock functions closes the hold; fentry on the
 * lock-initialisation functions starts a new generation of an address, and so
 * does freeing the slab object that held a lock (spinlock initialisation is a
 * plain store on production kernels; see lifetimes.bpf.h). A lock's first
 * acquisition in an aggregate also notes where it lives (places.bpf.h), for
 * naming it. User space turns
 * off (autoload) every program whose target this kernel lacks and the lock
 * kinds not asked for.
 *
 * Waits are timed by the contention tracepoints and attributed to the lock's
 * holder where the lock word names it (waits.bpf.h).
 *
 * Held locks are remembered in task storage, never in a hash map updated on
 * the lock path. The map helpers themselves take spinlocks (the stack store's
 * and the aggregation map's free lists): a program entered from a lock taken
 * inside another lockscope program on the same CPU would take the same lock
 * again and deadlock, so every program runs under a per-CPU guard and a
 * nested run is skipped and counted instead.
 */
#include "lifetimes.bpf.h"
#include "waits.bpf.h"

/* Set by user space before load. */
const volatile bool capture_stacks = true;
/* Off when the unlock functions are not probed: nothing would release a slot. */
const volatile bool track_holds = true;
/* 0: a stack per acquisition. N: exact counts go to the lock's stackless
 * aggregate, and a stack is recorded (in an LKS_F_SAMPLE aggregate) for the
 * first stack_sample_first acquisitions of a lock by a process, then for one
 * in N; user space apportions the exact counts over the sampled stacks. */
const volatile u32 stack_sample_every = 0;
const volatile u32 stack_sample_first = 0;
/* Which waits are timed, by the class of their lock (--locks); a class
 * not asked for is not probed, and its waits are not timed either. */
enum wait_class {
	WAIT_SPINLOCK = 1 << 0,
	WAIT_RWLOCK = 1 << 1,
	WAIT_MUTEX = 1 << 2, /* rt_mutexes too */
	WAIT_RWSEM = 1 << 3, /* per-CPU rw_semaphores too */
	WAIT_OTHER = 1 << 4, /* plain semaphores: timed only with every class */
};
const volatile enum wait_class wait_classes = WAIT_SPINLOCK | WAIT_RWLOCK | WAIT_MUTEX | WAIT_RWSEM | WAIT_OTHER;

/* The class of a lock by its contention flags. */
static __always_inline enum wait_class wait_class_of(u32 flags)
{
	if (flags & (LCB_F_MUTEX | LCB_F_RT))
		return WAIT_MUTEX;
	if (flags & LCB_F_SPIN)
		return flags & (LCB_F_READ | LCB_F_WRITE) ? WAIT_RWLOCK : WAIT_SPINLOCK;
	if (flags & (LCB_F_READ | LCB_F_WRITE))
		return WAIT_RWSEM;
	return WAIT_OTHER;
}

struct held_lock {
	u64 lock;
	u64 start_ns;
	u32 flags;
	s32 stack_id;
	u32 generation;
	u32 pad;
};

struct held_state {
	u32 workload; /* the task's, kept so that its next lock programs need not look it up */
	u32 pad;
	struct held_lock slot[MAX_HELD];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct held_state);
} held SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u32);
} cpu_busy SEC(".maps");

/* Enters the per-CPU guard: the flag to clear on leaving, or NULL (counted)
 * when a lockscope program is already running on this CPU. */
static __always_inline u32 *enter(void)
{
	u32 zero = 0;
	u32 *busy = bpf_map_lookup_elem(&cpu_busy, &zero);
	if (!busy)
		return NULL;
	if (*busy) {
		count(C_REENTERED);
		return NULL;
	}
	*busy = 1;
	return busy;
}

/* The current task's held locks, created at its first acquisition when
 * `create`; NULL when it has none (or they could not be made). `*workload`:
 * the task's workload, 0 for none. A tracked task's workload is read once,
 * into its held locks: on the lock paths a task storage lookup is cheaper
 * than the tgid's (or, by cgroup, the ancestors'). */
static __always_inline struct held_state *task_state(bool create, u32 *workload)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct held_state *hs = bpf_task_storage_get(&held, task, 0, 0);
	if (hs) {
		*workload = hs->workload;
		return hs;
	}
	*workload = current_workload();
	if (!*workload || !create)
		return NULL;
	hs = bpf_task_storage_get(&held, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (hs)
		hs->workload = *workload;
	return hs;
}

/* How a primitive reports success. */
enum outcome {
	ALWAYS,     /* returns once the lock is held */
	NONZERO_OK, /* trylock: 1 when acquired */
	ZERO_OK,    /* interruptible/killable: 0 when acquired */
};

/* One sampled stack of the acquisition `key` counts. */
static __always_inline void record_sample(void *ctx, const struct agg_key *key, u64 now)
{
	struct agg_key sample = *key;
	sample.flags |= LKS_F_SAMPLE;
	sample.stack_id = capture_stack(ctx);
	struct agg_val *v = agg_entry(&sample, now);
	if (v)
		__sync_fetch_and_add(&v->count, 1);
}

static __always_inline int record_acquire(void *ctx, u64 lock, u64 ret, u32 flags, enum outcome outcome)
{
	u32 workload = 0;
	struct held_state *hs = NULL;
	if (track_holds)
		hs = task_state(true, &workload);
	else
		workload = current_workload();
	if (!workload || !lock)
		return 0;
	count(C_EVENTS);

	bool acquired = outcome == ALWAYS || (outcome == NONZERO_OK ? (int)ret != 0 : (int)ret == 0);

	u64 now = bpf_ktime_get_ns();
	flags |= interrupt_here();
	struct agg_key key = {
		.workload = workload,
		.tgid = bpf_get_current_pid_tgid() >> 32,
		.lock = lock,
		.flags = flags,
		.stack_id = capture_stacks && !stack_sample_every ? capture_stack(ctx) : -1,
		.generation = generation_of(lock),
	};
	struct agg_val *v = agg_entry(&key, now);
	if (!v)
		return 0;
	if (!acquired) {
		__sync_fetch_and_add(&v->failed, 1);
		return 0;
	}
	u64 before = v->count;
	/* A new aggregate: maybe the first acquisition of this address. */
	if (!before) {
		remember_address(lock);
		note_place(lock, key.generation);
	}
	__sync_fetch_and_add(&v->count, 1);
	if (capture_stacks && stack_sample_every &&
	    (before < stack_sample_first || (before - stack_sample_first) % stack_sample_every == 0))
		record_sample(ctx, &key, now);
	if (!track_holds)
		return 0;
	if (!hs) {
		count(C_STATE_BUSY);
		return 0;
	}
	for (int i = 0; i < MAX_HELD; i++) {
		struct held_lock *h = &hs->slot[i];
		if (h->lock)
			continue;
		h->lock = lock;
		h->start_ns = now;
		h->flags = flags;
		h->stack_id = key.stack_id;
		h->generation = key.generation;
		return 0;
	}
	count(C_NESTING_OVERFLOW);
	return 0;
}

static __always_inline int record_release(u64 lock)
{
	u32 workload = 0;
	struct held_state *hs = task_state(false, &workload);
	if (!workload)
		return 0;
	if (!hs) {
		count(C_UNMATCHED_END);
		return 0;
	}
	/* The latest acquisition of this lock by this task is the one released. */
	int found = -1;
	for (int i = 0; i < MAX_HELD; i++) {
		if (hs->slot[i].lock == lock && (found < 0 || hs->slot[i].start_ns > hs->slot[found].start_ns))
			found = i;
	}
	for (int i = 0; i < MAX_HELD; i++) {
		if (i != found)
			continue;
		struct held_lock *h = &hs->slot[i];
		struct agg_key key = {
			.workload = workload,
			.tgid = bpf_get_current_pid_tgid() >> 32,
			.lock = lock,
			.flags = h->flags,
			.stack_id = h->stack_id,
			.generation = h->generation,
		};
		u64 hold_ns = bpf_ktime_get_ns() - h->start_ns;
		h->lock = 0;
		struct agg_val *v = bpf_map_lookup_elem(&aggregates, &key);
		if (v) {
			__sync_fetch_and_add(&v->hold_total_ns, hold_ns);
			if (hold_ns > v->hold_max_ns)
				v->hold_max_ns = hold_ns;
		}
		return 0;
	}
	/* Acquired before the recording began, or by another task (rwsem readers). */
	count(C_UNMATCHED_END);
	return 0;
}

#define GUARDED(call)                    \
	({                               \
		int _ret = 0;            \
		u32 *_busy = enter();    \
		if (_busy) {             \
			_ret = call;     \
			*_busy = 0;      \
		}                        \
		_ret;                    \
	})

static __always_inline int on_acquire(void *ctx, u64 lock, u64 ret, u32 flags, enum outcome outcome)
{
	return GUARDED(record_acquire(ctx, lock, ret, flags, outcome));
}

static __always_inline int on_release(u64 lock)
{
	return GUARDED(record_release(lock));
}

static __always_inline int record_wait_begin(void *ctx, u64 lock, u32 flags)
{
	if (!(wait_class_of(flags) & wait_classes))
		return 0;
	u32 workload = current_workload();
	if (workload)
		begin_wait(ctx, lock, flags, false);
	return 0;
}

static __always_inline int record_wait_end(u64 lock)
{
	u32 workload = current_workload();
	struct wait_slot done;
	u64 wait_ns;
	if (workload)
		end_wait(workload, lock, &done, &wait_ns);
	return 0;
}

static __always_inline int on_init(u64 lock)
{
	if (!pages_held_locks(lock >> PAGE_SHIFT, lock >> PAGE_SHIFT))
		return 0;
	return GUARDED(record_init(lock));
}

/* Frees are not skipped when another lockscope program is running on this
 * CPU: RCU callbacks free objects in the softirq of an interrupt that may
 * land in one, and a skipped free would let the next object at that address
 * pass for the same lock. The map updates they make are safe there (hash maps
 * detect re-entry, their locks are taken with interrupts off); the guard is
 * still held meanwhile, so lock programs run by those updates are skipped. */
#define EVEN_IF_GUARDED(call)                                          \
	({                                                             \
		u32 _zero = 0;                                         \
		u32 *_busy = bpf_map_lookup_elem(&cpu_busy, &_zero);   \
		if (_busy) {                                           \
			u32 _was_busy = *_busy;                        \
			*_busy = 1;                                    \
			call;                                          \
			*_busy = _was_busy;                            \
		}                                                      \
		0;                                                     \
	})

static __always_inline int on_free(struct kmem_cache *cache, u64 object)
{
	return EVEN_IF_GUARDED(record_slab_free(cache, object));
}

static __always_inline int on_bulk_free(struct kmem_cache *cache, u64 n, u64 objects)
{
	return EVEN_IF_GUARDED(record_bulk_free(cache, n, objects));
}

static __always_inline u64 arg0(u64 *ctx)
{
	u64 v = 0;
	bpf_get_func_arg(ctx, 0, &v);
	return v;
}

static __always_inline u64 retval(u64 *ctx)
{
	u64 v = 0;
	bpf_get_func_ret(ctx, &v);
	return v;
}

/*
 * kprobe fallback, for kernels that refuse trampolines but allow kprobes.
 * A kretprobe cannot read arguments, so the entry probe remembers the lock
 * with the stack pointer it was called at; the return probe takes the entry
 * whose stack pointer matches its own (sp after return = entry sp + 8),
 * dropping any left by returns the kernel missed (kretprobe maxactive).
 */
struct pending_call {
	u64 lock;
	u64 sp;
};

#define MAX_PENDING (MAX_NESTING * 2)

struct pending_calls {
	struct pending_call call[MAX_PENDING];
	u32 depth;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pending_calls);
} pending SEC(".maps");

static __always_inline int on_call(u64 lock, u64 sp)
{
	if (!current_workload())
		return 0;
	struct pending_calls *p = bpf_task_storage_get(&pending, bpf_get_current_task_btf(), 0,
						       BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!p) {
		count(C_STATE_BUSY);
		return 0;
	}
	u32 d = p->depth;
	/* Calls made at or below this frame have returned: their return probes
	 * were missed. Drop them, so misses cannot fill the list. */
	for (int i = MAX_PENDING - 1; i >= 0; i--) {
		if ((u32)i >= d)
			continue;
		if (p->call[i].sp > sp)
			break;
		d = i;
	}
	if (d >= MAX_PENDING) {
		count(C_NESTING_OVERFLOW);
		return 0;
	}
	p->call[d].lock = lock;
	p->call[d].sp = sp;
	p->depth = d + 1;
	return 0;
}

/* The lock of the call returning with stack pointer `sp`, or 0. */
static __always_inline u64 on_return(u64 sp)
{
	if (!current_workload())
		return 0;
	struct pending_calls *p = bpf_task_storage_get(&pending, bpf_get_current_task_btf(), 0, 0);
	if (!p)
		return 0;
	for (int i = MAX_PENDING - 1; i >= 0; i--) {
		if ((u32)i >= p->depth)
			continue;
		if (p->call[i].sp + 8 == sp) {
			p->depth = i;
			return p->call[i].lock;
		}
	}
	count(C_UNMATCHED_END);
	return 0;
}

#define SPIN LCB_F_SPIN
#define RLOCK (LCB_F_SPIN | LCB_F_READ)
#define WLOCK (LCB_F_SPIN | LCB_F_WRITE)
#define MUTEX LCB_F_MUTEX
#define RTMUTEX LCB_F_RT
#define RSEM LCB_F_READ
#define WSEM LCB_F_WRITE

/* Each function gets a trampoline program (fexit/fentry) and kprobe ones;
 * user space loads one family. Sections name the target function. */
#define ACQUIRE(fn, flags, outcome)                                                    \
	SEC("fexit/" #fn)                                                              \
	int lks_a_##fn(u64 *ctx)                                                       \
	{                                                                              \
		return on_acquire(ctx, arg0(ctx), retval(ctx), flags, outcome);        \
	}                                                                              \
	SEC("kprobe/" #fn)                                                             \
	int lks_kc_##fn(struct pt_regs *regs)                                          \
	{                                                                              \
		return on_call(regs->di, regs->sp);                                    \
	}                                                                              \
	SEC("kretprobe/" #fn)                                                          \
	int lks_ka_##fn(struct pt_regs *regs)                                          \
	{                                                                              \
		return on_acquire(regs, on_return(regs->sp), regs->ax, flags, outcome); \
	}
#define RELEASE(fn, kind)                          \
	SEC("fentry/" #fn)                         \
	int lks_r_##fn(u64 *ctx)                   \
	{                                          \
		return on_release(arg0(ctx));      \
	}                                          \
	SEC("kprobe/" #fn)                         \
	int lks_kr_##fn(struct pt_regs *regs)      \
	{                                          \
		return on_release(regs->di);       \
	}
#define INIT(fn)                              \
	SEC("fentry/" #fn)                    \
	int lks_i_##fn(u64 *ctx)              \
	{                                     \
		return on_init(arg0(ctx));    \
	}                                     \
	SEC("kprobe/" #fn)                    \
	int lks_ki_##fn(struct pt_regs *regs) \
	{                                     \
		return on_init(regs->di);     \
	}
/* A slab free, fn(struct kmem_cache *, void *object, ...). The kprobe family
 * sees these frees through tracepoints instead (below). */
#define FREE(fn, how) FREE_##how(fn)
#define FREE_FENTRY(fn)                                              \
	SEC("fentry/" #fn)                                           \
	int lks_f_##fn(u64 *ctx)                                     \
	{                                                            \
		return on_free((struct kmem_cache *)ctx[0], ctx[1]); \
	}
#define FREE_BY_HAND(fn) /* below */

#include "primitives.h"

SEC("fentry/kmem_cache_free_bulk")
int lks_f_kmem_cache_free_bulk(u64 *ctx)
{
	/* Read as numbers: the verifier refuses a direct load of a void ** argument. */
	u64 cache = 0, n = 0, objects = 0;
	bpf_get_func_arg(ctx, 0, &cache);
	bpf_get_func_arg(ctx, 1, &n);
	bpf_get_func_arg(ctx, 2, &objects);
	return on_bulk_free((struct kmem_cache *)cache, n, objects);
}
SEC("kprobe/kmem_cache_free_bulk")
int lks_kf_kmem_cache_free_bulk(struct pt_regs *regs)
{
	return on_bulk_free((struct kmem_cache *)regs->di, regs->si, regs->dx);
}

/* The kprobe family's single frees come from the slab tracepoints: the kernel
 * runs one kprobe program at a time per CPU, so a kprobe on the free would
 * miss every free made in an interrupt landing inside a lock probe (RCU's,
 * mostly), while tracepoint programs still run there. Raw tracepoints, as
 * 6.1's tp_btf refuses to read the `const void *` object argument. */
SEC("raw_tp/kmem_cache_free")
int lks_tf_kmem_cache_free(struct bpf_raw_tracepoint_args *ctx) /* (call_site, object, cache) */
{
	return on_free((struct kmem_cache *)ctx->args[2], ctx->args[1]);
}
SEC("raw_tp/kfree")
int lks_tf_kfree(struct bpf_raw_tracepoint_args *ctx) /* (call_site, object): the cache is read from the object's page */
{
	struct kmem_cache *cache = cache_of(ctx->args[1]);
	return cache ? on_free(cache, ctx->args[1]) : 0; /* not a slab object: a large kmalloc's pages */
}

/* Waits, in either family: raw tracepoints run even inside a kprobe program. */
SEC("raw_tp/contention_begin")
int lks_w_begin(struct bpf_raw_tracepoint_args *ctx) /* (lock, flags) */
{
	return GUARDED(record_wait_begin(ctx, ctx->args[0], (u32)ctx->args[1]));
}

SEC("raw_tp/contention_end")
int lks_w_end(struct bpf_raw_tracepoint_args *ctx) /* (lock, ret) */
{
	return GUARDED(record_wait_end(ctx->args[0]));
}
