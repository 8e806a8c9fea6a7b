/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What every lockscope recorder shares: the selection of workload processes
 * (by tgid, followed across fork, or by cgroup), the in-kernel aggregation
 * map, the stack store and the drop counters. Included once per BPF object.
 */
#ifndef LOCKSCOPE_WORKLOADS_BPF_H
#define LOCKSCOPE_WORKLOADS_BPF_H

#include "lockscope.bpf.h"

char LICENSE[] SEC("license") = "GPL";

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

/*
 * Kernel stacks, each stored once: `stack_slots` maps a stack's 64-bit hash
 * to its slot in `stacks`. A BPF stack-trace map would be simpler, but it
 * drops a stack whose bucket another stack took first: about 2% of
 * acquisitions on file churn, and on an unlucky boot every acquisition of one
 * call site. Here a stack is lost only once every slot is taken.
 */
#define STACK_SLOTS 32768

/* Frames kept per stack (at most MAX_STACK_DEPTH), set by user space. */
const volatile u32 stack_depth = MAX_STACK_DEPTH;

struct frames {
	u64 ip[MAX_STACK_DEPTH];
};

/* Where a stack is taken before it is known to be new. One per CPU is
 * enough: a program capturing a stack is never re-entered on its CPU (the
 * acquire-mode guard, the kernel's per-program recursion check). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct frames);
} stack_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STACK_SLOTS);
	__type(key, u64);   /* hash of the frames */
	__type(value, u32); /* slot in `stacks`: the stack id of the records */
} stack_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STACK_SLOTS);
	__uint(key_size, sizeof(u32));
	__uint(value_size, MAX_STACK_DEPTH * sizeof(u64)); /* user space: stack_depth frames */
} stacks SEC(".maps");

/* Slots handed out so far. */
u32 stacks_used = 0;

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

/* Put the enums user space needs into the object's BTF, so the generated
 * skeleton carries them (src/abi.rs) instead of a copy kept by hand. */
const volatile enum counter nr_counters = NR_COUNTERS;
const volatile enum lks_flag lks_flags = LKS_F_INTERRUPT | LKS_F_SAMPLE;

static __always_inline void count(enum counter which)
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

	/* Filled in order while recording; the first empty entry ends them.
	 * The key is a copy: the counter stays in a register, where the
	 * verifier sees it grow and so the loop end. */
	for (u32 i = 0; i < MAX_CGROUP_TARGETS; i++) {
		u32 key = i;
		struct cgroup_target *t = bpf_map_lookup_elem(&cgroup_targets, &key);
		if (!t || !t->id)
			break;
		if (bpf_get_current_ancestor_cgroup_id(t->level) == t->id)
			return t->workload;
	}
	return 0;
}

#ifndef EBUSY
#define EBUSY 16
#endif
#ifndef EEXIST
#define EEXIST 17
#endif

/* Inserts `value` at `key` unless the key is there: 0 or a negative errno,
 * -EEXIST when another CPU inserted it first. Read as an int: 6.1's verifier
 * turns the helper into a direct call of the map's update, whose int result
 * reaches the program zero-extended (-EEXIST as 4294967279), so a race lost
 * to another CPU read as a failure and its stack or count was dropped. */
static __always_inline int map_insert(void *map, const void *key, const void *value)
{
	return (int)bpf_map_update_elem(map, key, value, BPF_NOEXIST);
}

/* The hash map's entry for `key`, inserted as `init` when missing; NULL when
 * it cannot be, counted as `full` (or as a busy bucket). */
static __always_inline void *lookup_or_insert(void *map, const void *key, const void *init, enum counter full)
{
	void *v = bpf_map_lookup_elem(map, key);
	if (v)
		return v;
	int err = map_insert(map, key, init);
	if (err && err != -EEXIST) {
		count(err == -EBUSY ? C_MAP_BUSY : full);
		return NULL;
	}
	return bpf_map_lookup_elem(map, key);
}

static __always_inline struct agg_val *agg_entry(struct agg_key *key, u64 now)
{
	struct agg_val zero = { .first_ns = now };
	return lookup_or_insert(&aggregates, key, &zero, C_MAP_FULL);
}

/* 64-bit hash of the first `n` frames. */
static __always_inline u64 hash_frames(struct frames *f, u32 n)
{
	u64 h = 0x9e3779b97f4a7c15ULL ^ n;
	for (u32 i = 0; i < MAX_STACK_DEPTH && i < n; i++) {
		h = (h ^ f->ip[i]) * 0xff51afd7ed558ccdULL;
		h ^= h >> 33;
	}
	return h;
}

/* Zeroes the frames after the first `n` of the `stack_depth` stored, so a
 * stored stack's end reads as a zero frame. Only new stacks need it. */
static __always_inline void end_frames(struct frames *f, u32 n)
{
	for (u32 i = 0; i < MAX_STACK_DEPTH && i < stack_depth; i++) {
		if (i >= n)
			f->ip[i] = 0;
	}
}

/* The current kernel stack's id (its slot in `stacks`), or -1 (counted) when
 * it could not be stored. */
static __always_inline s32 capture_stack(void *ctx)
{
	u32 zero = 0;
	struct frames *f = bpf_map_lookup_elem(&stack_scratch, &zero);
	if (!f)
		return -1;
	long len = bpf_get_stack(ctx, f->ip, stack_depth * sizeof(u64), 0);
	if (len <= 0) {
		count(C_STACK_ERROR);
		return -1;
	}
	u32 n = len / sizeof(u64);
	u64 hash = hash_frames(f, n);
	u32 *known = bpf_map_lookup_elem(&stack_slots, &hash);
	if (known)
		return *known;

	/* Checked first so that failed captures cannot wrap the counter around. */
	if (stacks_used >= STACK_SLOTS) {
		count(C_STACKS_FULL);
		return -1;
	}
	u32 slot = __sync_fetch_and_add(&stacks_used, 1);
	if (slot >= STACK_SLOTS) {
		count(C_STACKS_FULL);
		return -1;
	}
	/* Frames first, then the hash that makes them findable. */
	end_frames(f, n);
	if (bpf_map_update_elem(&stacks, &slot, f, BPF_ANY)) {
		count(C_STACK_ERROR);
		return -1;
	}
	int err = map_insert(&stack_slots, &hash, &slot);
	if (err == -EEXIST) { /* another CPU stored the same stack; this slot stays unused */
		known = bpf_map_lookup_elem(&stack_slots, &hash);
		return known ? *known : -1;
	}
	if (err) {
		count(C_STACK_ERROR);
		return -1;
	}
	return slot;
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
