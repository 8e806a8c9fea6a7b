/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Where each lock lives, learned once per lock address, never per
 * acquisition: the slab cache holding it (the bpf_get_kmem_cache kfunc,
 * 6.13+) and that cache's geometry, from which user space finds the lock's
 * object type and member (lockscope-naming). Each CPU's runqueues is noted too,
 * for locks in per-CPU variables.
 */
#ifndef LOCKSCOPE_PLACES_BPF_H
#define LOCKSCOPE_PLACES_BPF_H

#include "workloads.bpf.h"

extern struct kmem_cache *bpf_get_kmem_cache(u64 addr) __ksym __weak;

/* Set by user space where the programs may call the kfunc (tp_btf). */
const volatile bool note_places = false;

/* The per-CPU variable `runqueues` (a struct rq): its address on each CPU
 * tells user space where that CPU's per-CPU area begins (BTF gives its
 * offset there), so locks in per-CPU variables are named too. Read through
 * the running task (its group scheduling entity's queue's rq), as a typed
 * ksym needs kallsyms to list data symbols. */
struct cfs_rq {
	struct rq *rq;
} __attribute__((preserve_access_index));

struct sched_entity {
	struct cfs_rq *cfs_rq;
} __attribute__((preserve_access_index));

struct task_struct___sched {
	struct sched_entity se;
} __attribute__((preserve_access_index));

#define MAX_CPUS 1024

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_CPUS);
	__type(key, u32);
	__type(value, u64); /* this CPU's &runqueues, 0 until noted */
} percpu_runqueues SEC(".maps");

struct lock_place {
	u64 cache; /* its kmem_cache, 0 when the lock is in no slab object */
};

struct cache_info {
	char name[32];
	u32 size;
	u32 object_size;
	u32 red_left_pad;
	u32 order;     /* a slab's pages: PAGE_SIZE << order bytes, naturally aligned */
	u32 min_order; /* the order of slabs allocated when memory was short */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, u64); /* lock address */
	__type(value, struct lock_place);
} lock_places SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u64); /* struct kmem_cache * */
	__type(value, struct cache_info);
} slab_caches SEC(".maps");

static __always_inline void note_place(u64 lock)
{
	if (!note_places || !bpf_ksym_exists(bpf_get_kmem_cache))
		return;
	if (bpf_map_lookup_elem(&lock_places, &lock))
		return;
	struct kmem_cache *s = bpf_get_kmem_cache(lock);
	struct lock_place place = { .cache = (u64)s };
	if (!s && bpf_core_field_exists(struct sched_entity, cfs_rq)) {
		u32 cpu = bpf_get_smp_processor_id();
		u64 *rq = bpf_map_lookup_elem(&percpu_runqueues, &cpu);
		if (rq && !*rq) {
			struct task_struct___sched *task = (void *)bpf_get_current_task();
			*rq = (u64)BPF_CORE_READ(task, se.cfs_rq, rq);
		}
	}
	long err = bpf_map_update_elem(&lock_places, &lock, &place, BPF_NOEXIST);
	if (err) {
		if (err != -17 /* EEXIST: another CPU noted it */)
			count(C_PLACES_FULL);
		return;
	}
	if (!s || bpf_map_lookup_elem(&slab_caches, &place.cache))
		return;
	struct cache_info info = {
		.size = BPF_CORE_READ(s, size),
		.object_size = BPF_CORE_READ(s, object_size),
		.red_left_pad = BPF_CORE_READ(s, red_left_pad),
		.order = BPF_CORE_READ(s, oo.x) >> 16,
		.min_order = BPF_CORE_READ(s, min.x) >> 16,
	};
	bpf_probe_read_kernel_str(info.name, sizeof(info.name), BPF_CORE_READ(s, name));
	if (bpf_map_update_elem(&slab_caches, &place.cache, &info, BPF_NOEXIST) == -7 /* E2BIG: full */)
		count(C_PLACES_FULL);
}

#endif
