/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Where each lock lives, learned once per lock (address and generation),
 * never per acquisition: the slab cache holding it, and that cache's
 * geometry (once per cache), from which user space finds the lock's object
 * type and member (lockscope-naming). The cache comes from the bpf_get_kmem_cache kfunc
 * (6.13+, BTF-typed tracepoints) or from the lock's page (the kernel's
 * virt_to_slab, where kallsyms locates the page array); the page also gives
 * the slab's first byte. Each CPU's runqueues is noted too, for locks in
 * per-CPU variables and for what runs on each CPU (spinlock holders, waits.bpf.h).
 */
#ifndef LOCKSCOPE_PLACES_BPF_H
#define LOCKSCOPE_PLACES_BPF_H

#include "workloads.bpf.h"

extern struct kmem_cache *bpf_get_kmem_cache(u64 addr) __ksym __weak;

/* Set by user space where these programs may call the kfunc (BTF-typed
 * tracepoints and trampolines; not kprobes or plain tracepoints). */
const volatile bool kmem_cache_kfunc = false;

/* Where the direct map and the struct page array begin (page_offset_base,
 * vmemmap_base, randomised by KASLR) and how many pages there are (max_pfn):
 * their addresses, from kallsyms; 0 when kallsyms does not list them. */
const volatile u64 page_offset_base_addr = 0;
const volatile u64 vmemmap_base_addr = 0;
const volatile u64 max_pfn_addr = 0;

#define PAGE_SHIFT 12

struct page {
	unsigned long flags;
	unsigned long compound_head;
} __attribute__((preserve_access_index));

struct slab {
	struct kmem_cache *slab_cache;
} __attribute__((preserve_access_index));

/* Up to 6.9 a slab page has the flag PG_slab; from 6.12 its page type
 * (the top byte of page_type) is PGTY_slab. (6.10 and 6.11 encode page
 * types otherwise: not read.) */
enum pageflags { PG_slab = 0 };
enum pagetype { PGTY_slab = 0 };

struct page___typed {
	unsigned int page_type;
} __attribute__((preserve_access_index));

static __always_inline bool slab_pages_marked(void)
{
	return bpf_core_enum_value_exists(enum pageflags, PG_slab) || bpf_core_enum_value_exists(enum pagetype, PGTY_slab);
}

/* Whether the (head) page is a slab's. */
static __always_inline bool is_slab_page(u64 page)
{
	if (bpf_core_enum_value_exists(enum pageflags, PG_slab)) {
		u64 flags = BPF_CORE_READ((struct page *)page, flags);
		return flags & (1ULL << (bpf_core_enum_value(enum pageflags, PG_slab) & 63));
	}
	u32 type = BPF_CORE_READ((struct page___typed *)page, page_type);
	return (type >> 24) == bpf_core_enum_value(enum pagetype, PGTY_slab);
}

/* A slab object's cache and its slab's first byte. */
struct slab_of {
	struct kmem_cache *cache;
	u64 start;
};

/* Whether slab_of can read an object's slab from its page here. */
static __always_inline bool pages_readable(void)
{
	return page_offset_base_addr && vmemmap_base_addr && max_pfn_addr && slab_pages_marked();
}

/* Where the direct map and the page array begin, read once: KASLR fixes them
 * at boot. max_pfn is read again only for an object past it (memory added
 * since). A global, so each read after the first is a load, not a helper call. */
static struct {
	u64 direct_map;
	u64 pages;
	u64 page_count;
} layout;

static __always_inline bool read_layout(void)
{
	if (!layout.direct_map &&
	    (bpf_probe_read_kernel(&layout.pages, sizeof(layout.pages), (void *)vmemmap_base_addr) ||
	     bpf_probe_read_kernel(&layout.direct_map, sizeof(layout.direct_map), (void *)page_offset_base_addr)))
		return false;
	return layout.direct_map != 0;
}

static __always_inline bool in_direct_map(u64 object)
{
	if (object < layout.direct_map)
		return false;
	u64 pfn = (object - layout.direct_map) >> PAGE_SHIFT;
	if (pfn < layout.page_count)
		return true;
	return !bpf_probe_read_kernel(&layout.page_count, sizeof(layout.page_count), (void *)max_pfn_addr) &&
	       pfn < layout.page_count;
}

/* The slab holding an object, read from its page (as the kernel's
 * virt_to_slab does); a NULL cache when it is not a slab object. Addresses
 * outside the direct map (the kernel image, vmalloc) have no page there:
 * reading one would read arbitrary memory. */
static __always_inline struct slab_of slab_of(u64 object)
{
	struct slab_of none = {};
	if (!pages_readable() || !read_layout() || !in_direct_map(object))
		return none;
	u64 direct_map = layout.direct_map, pages = layout.pages;
	u64 page_size = bpf_core_type_size(struct page);
	u64 page = pages + ((object - direct_map) >> PAGE_SHIFT) * page_size;
	u64 head = BPF_CORE_READ((struct page *)page, compound_head);
	if (head & 1)
		page = head - 1;
	if (!is_slab_page(page))
		return none;
	struct slab_of found = {
		.cache = BPF_CORE_READ((struct slab *)page, slab_cache),
		.start = direct_map + (((page - pages) / page_size) << PAGE_SHIFT),
	};
	return found;
}

static __always_inline struct kmem_cache *cache_of(u64 object)
{
	return slab_of(object).cache;
}

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

/* This CPU's runqueues, noted the first time; 0 when unknown. */
static __always_inline u64 this_runqueue(void)
{
	if (!bpf_core_field_exists(struct sched_entity, cfs_rq))
		return 0;
	u32 cpu = bpf_get_smp_processor_id();
	u64 *rq = bpf_map_lookup_elem(&percpu_runqueues, &cpu);
	if (!rq)
		return 0;
	if (!*rq) {
		struct task_struct___sched *task = (void *)bpf_get_current_task();
		*rq = (u64)BPF_CORE_READ(task, se.cfs_rq, rq);
	}
	return *rq;
}

struct cache_info {
	char name[32];
	u32 size;
	u32 object_size;
	u32 red_left_pad;
	u32 order;     /* a slab's pages: PAGE_SIZE << order bytes, naturally aligned */
	u32 min_order; /* the order of slabs allocated when memory was short */
};

/* Each slab cache's geometry, read once per cache rather than once per lock
 * (a file workload makes a new lock every few acquisitions). Keyed by the
 * kmem_cache's address, which stays its own while the cache exists. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u64);
	__type(value, struct cache_info);
} cache_infos SEC(".maps");

static __always_inline void note_cache(struct kmem_cache *s)
{
	u64 key = (u64)s;
	if (bpf_map_lookup_elem(&cache_infos, &key))
		return;
	struct cache_info info = {
		.size = BPF_CORE_READ(s, size),
		.object_size = BPF_CORE_READ(s, object_size),
		.red_left_pad = BPF_CORE_READ(s, red_left_pad),
		.order = BPF_CORE_READ(s, oo.x) >> 16,
		.min_order = BPF_CORE_READ(s, min.x) >> 16,
	};
	bpf_probe_read_kernel_str(info.name, sizeof(info.name), BPF_CORE_READ(s, name));
	int err = map_insert(&cache_infos, &key, &info);
	if (err && err != -EEXIST) /* -EEXIST: another CPU noted it first */
		count(C_PLACES_FULL);
}

struct lock_place {
	u64 cache;      /* its kmem_cache (geometry in cache_infos), 0 when the lock is in no slab object */
	u64 slab_start; /* its slab's first byte, 0 when unknown */
};

/* A lock: its address and generation. A freed slab object's address may
 * come back in another cache's object, so a place is noted per generation. */
struct place_key {
	u64 lock;
	u32 generation;
	u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct place_key);
	__type(value, struct lock_place);
} lock_places SEC(".maps");

/* Whether the kernel's bpf_get_kmem_cache tells a lock's slab cache. */
static __always_inline bool kfunc_tells_cache(void)
{
	return kmem_cache_kfunc && bpf_ksym_exists(bpf_get_kmem_cache);
}

/* Whether a lock's slab cache can be told here (by the kfunc, or from its
 * page): then every cache that held a noted lock is in cache_infos. */
static __always_inline bool slabs_told(void)
{
	return kfunc_tells_cache() || pages_readable();
}

static __always_inline void note_place(u64 lock, u32 generation)
{
	struct place_key key = { .lock = lock, .generation = generation };
	if (!slabs_told())
		return; /* no way to tell a slab object here */
	if (bpf_map_lookup_elem(&lock_places, &key))
		return;
	struct slab_of slab = slab_of(lock);
	struct kmem_cache *s = kfunc_tells_cache() ? bpf_get_kmem_cache(lock) : slab.cache;
	struct lock_place place = { .cache = (u64)s };
	if (s) {
		place.slab_start = slab.start;
		note_cache(s);
	} else {
		this_runqueue(); /* noted for naming per-CPU locks */
	}
	int err = map_insert(&lock_places, &key, &place);
	if (err && err != -EEXIST) /* -EEXIST: another CPU noted it first */
		count(C_PLACES_FULL);
}

#endif
