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
#include "places.bpf.h"

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
		note_place(lock);
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
