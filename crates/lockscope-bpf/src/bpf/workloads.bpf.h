/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What every lockscope recorder shares: the selection of workload processes
 * (by tgid, followed across fork, or by cgroup), the in-kernel aggregation
 * map, the stack map and the drop counters. Included once per BPF object.
 */
#ifndef LOCKSCOPE_WORKLOADS_BPF_H
#define LOCKSCOPE_WORKLOADS_BPF_H

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
	/* Roomy: a bucket collision loses the stack of every later event with it. */
	__uint(max_entries, 32768);
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

/* The aggregate for `key`, created (zeroed, first_ns = now) if new; NULL
 * (counted) when the map is full or busy on this CPU. */
static __always_inline struct agg_val *agg_entry(struct agg_key *key, u64 now)
{
	struct agg_val *v = bpf_map_lookup_elem(&aggregates, key);
	if (v)
		return v;
	struct agg_val zero = { .first_ns = now };
	long err = bpf_map_update_elem(&aggregates, key, &zero, BPF_NOEXIST);
	if (err && err != -17 /* EEXIST: another CPU inserted it */) {
		count(err == -16 /* EBUSY */ ? C_MAP_BUSY : C_MAP_FULL);
		return NULL;
	}
	return bpf_map_lookup_elem(&aggregates, key);
}

/* The current kernel stack's id, or -1 (counted) when it could not be stored. */
static __always_inline s32 capture_stack(void *ctx)
{
	long id = bpf_get_stackid(ctx, &stacks, 0);
	if (id == -17 /* EEXIST */)
		count(C_STACK_COLLISION);
	else if (id < 0)
		count(C_STACK_ERROR);
	return id < 0 ? -1 : id;
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

#endif
