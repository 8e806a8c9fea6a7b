// SPDX-License-Identifier: GPL-2.0
/*
 * lockscope contention recorder.
 *
 * lock:contention_begin/end fire in the slow path of every kernel lock. For
 * the workloads user space selected (by tgid, followed across fork, or by
 * cgroup) we time each wait and aggregate it in the kernel, keyed by
 * (workload, tgid, lock address, lock flags, kernel stack). Nothing is
 * streamed per event; everything not recorded is counted.
 * Waits are also attributed to the lock's holder where the lock word names
 * it (waits.bpf.h).
 *
 * A contended lock's address gets a new generation when the slab object
 * holding it is freed (lifetimes.bpf.h): without it, an object freed by one
 * workload and allocated again by another would pass for one lock shared by
 * both (a file system's inodes, by the thousand).
 *
 * Interrupt context is read from the CPU's preempt count, reached through
 * its runqueue (waits.bpf.h), and recognised from the stack in user space
 * too (interrupt entry frames) for kernels whose BTF does not locate the
 * count. Interrupts nest inside a task's wait but always complete first,
 * and use their own slot (a different lock).
 */
#include "lifetimes.bpf.h"
#include "waits.bpf.h"

static __always_inline int on_begin(void *ctx, u64 lock, u32 flags)
{
	u32 workload = current_workload();
	if (!workload)
		return 0;
	count(C_EVENTS);
	begin_wait(ctx, lock, flags, true);
	return 0;
}

static __always_inline int on_end(u64 lock)
{
	u32 workload = current_workload();
	if (!workload)
		return 0;
	struct wait_slot s;
	u64 wait_ns;
	if (!end_wait(workload, lock, &s, &wait_ns))
		return 0;
	struct agg_key key = {
		.workload = workload,
		.tgid = bpf_get_current_pid_tgid() >> 32,
		.lock = lock,
		.flags = s.flags,
		.stack_id = s.stack_id,
		.generation = generation_of(lock),
	};
	struct agg_val *v = agg_entry(&key, bpf_ktime_get_ns());
	if (!v)
		return 0;
	/* A new aggregate: maybe the first wait for this address. */
	if (!v->count) {
		remember_address(lock);
		note_place(lock, key.generation);
	}
	__sync_fetch_and_add(&v->count, 1);
	__sync_fetch_and_add(&v->wait_total_ns, wait_ns);
	if (wait_ns > v->wait_max_ns)
		v->wait_max_ns = wait_ns;
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

/* Slab frees: typed where the kernel has bpf_get_kmem_cache to size a
 * kfree'd object, raw elsewhere, sizing it from its page (places.bpf.h; user
 * space picks). No tracepoint sees kmem_cache_free_bulk's objects (kfree_rcu's
 * batches). */
SEC("tp_btf/kmem_cache_free")
int lks_btf_cache_free(u64 *ctx) /* (call_site, object, cache) */
{
	/* A typed pointer: read directly, cheaper than a helper call on every free. */
	return record_free(ctx[1], ((struct kmem_cache *)ctx[2])->object_size);
}

SEC("tp_btf/kfree")
int lks_btf_kfree(u64 *ctx) /* (call_site, object) */
{
	u64 object = ctx[1];
	if (!kfunc_tells_cache())
		return 0; /* loaded only where the kernel has the kfunc */
	struct kmem_cache *cache = bpf_get_kmem_cache(object);
	return cache ? record_free(object, cache->object_size) : 0; /* not a slab object: a large kmalloc's pages */
}

SEC("raw_tp/kmem_cache_free")
int lks_tp_cache_free(struct bpf_raw_tracepoint_args *ctx) /* (call_site, object, cache) */
{
	return record_slab_free((struct kmem_cache *)ctx->args[2], ctx->args[1]);
}

SEC("raw_tp/kfree")
int lks_tp_kfree(struct bpf_raw_tracepoint_args *ctx) /* (call_site, object) */
{
	struct kmem_cache *cache = cache_of(ctx->args[1]);
	return cache ? record_slab_free(cache, ctx->args[1]) : 0;
}
