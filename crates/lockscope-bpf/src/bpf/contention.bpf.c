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
 * Interrupt context is recognised from the stack in user space (interrupt
 * entry frames), as the per-CPU preempt count is not reachable from BPF on
 * kernels without CONFIG_KALLSYMS_ALL. Interrupts nest inside a task's wait
 * but always complete first, and use their own slot (a different lock).
 */
#include "lockscope.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by user space before load. */
const volatile u32 n_cgroup_targets = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, u32);   /* tgid */
	__type(value, u32); /* workload id */
} tracked_tgids SEC(".maps");

/* Every tgid ever attributed to a workload, kept after it exits. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, u32);
	__type(value, u32);
} seen_tgids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_CGROUP_TARGETS);
	__type(key, u32);
	__type(value, struct cgroup_target);
} cgroup_targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384);
	__uint(key_size, sizeof(u32));
	__uint(value_size, MAX_STACK_DEPTH * sizeof(u64));
} stacks SEC(".maps");

/* Preallocated, so updates never allocate on a lock path. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct agg_key);
	__type(value, struct agg_val);
} aggregates SEC(".maps");

struct wait_slot {
	u64 lock;
	u64 start_ns;
	u32 flags;
	s32 stack_id;
};

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

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_COUNTERS);
	__type(key, u32);
	__type(value, u64);
} counters SEC(".maps");

static __always_inline void count(u32 which)
{
	u64 *c = bpf_map_lookup_elem(&counters, &which);
	if (c)
		(*c)++;
}

static __always_inline u32 current_workload(void)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	u32 *w = bpf_map_lookup_elem(&tracked_tgids, &tgid);
	if (w)
		return *w;

	for (u32 i = 0; i < MAX_CGROUP_TARGETS && i < n_cgroup_targets; i++) {
		struct cgroup_target *t = bpf_map_lookup_elem(&cgroup_targets, &i);
		if (!t)
			break;
		if (bpf_get_current_ancestor_cgroup_id(t->level) == t->id)
			return t->workload;
	}
	return 0;
}

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

	long stack_id = bpf_get_stackid(ctx, &stacks, 0);
	if (stack_id == -17 /* EEXIST */)
		count(C_STACK_COLLISION);
	else if (stack_id < 0)
		count(C_STACK_ERROR);

	for (int i = 0; i < MAX_NESTING; i++) {
		if (i != free)
			continue;
		ws->slot[i].stack_id = stack_id;
		ws->slot[i].flags = flags;
		ws->slot[i].start_ns = bpf_ktime_get_ns();
		ws->slot[i].lock = lock;
	}
	return 0;
}

static __always_inline void aggregate(struct agg_key *key, u64 wait_ns)
{
	struct agg_val *v = bpf_map_lookup_elem(&aggregates, key);
	if (!v) {
		struct agg_val zero = {};
		long err = bpf_map_update_elem(&aggregates, key, &zero, BPF_NOEXIST);
		if (err && err != -17 /* EEXIST: another CPU inserted it */) {
			count(err == -16 /* EBUSY */ ? C_MAP_BUSY : C_MAP_FULL);
			return;
		}
		v = bpf_map_lookup_elem(&aggregates, key);
		if (!v)
			return;
	}
	__sync_fetch_and_add(&v->count, 1);
	__sync_fetch_and_add(&v->wait_total_ns, wait_ns);
	if (wait_ns > v->wait_max_ns)
		v->wait_max_ns = wait_ns;
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
		u64 wait_ns = bpf_ktime_get_ns() - s->start_ns;
		s->lock = 0;
		aggregate(&key, wait_ns);
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

/* Follow workloads across fork: a child of a tracked process is tracked. */
SEC("raw_tp/sched_process_fork")
int lks_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	u32 parent_tgid = BPF_CORE_READ(parent, tgid);
	u32 child_tgid = BPF_CORE_READ(child, tgid);
	if (parent_tgid == child_tgid)
		return 0; /* a new thread: its process is tracked already */

	u32 *workload = bpf_map_lookup_elem(&tracked_tgids, &parent_tgid);
	if (!workload)
		return 0;
	u32 w = *workload;
	if (bpf_map_update_elem(&tracked_tgids, &child_tgid, &w, BPF_ANY) ||
	    bpf_map_update_elem(&seen_tgids, &child_tgid, &w, BPF_ANY))
		count(C_TRACK_FULL);
	return 0;
}

/* Stop tracking a process once its last thread exits, so a reused tgid is not misattributed. */
SEC("raw_tp/sched_process_exit")
int lks_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	u32 tgid = BPF_CORE_READ(task, tgid);
	if (BPF_CORE_READ(task, signal, live.counter) == 0)
		bpf_map_delete_elem(&tracked_tgids, &tgid);
	return 0;
}
