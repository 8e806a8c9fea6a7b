/* SPDX-License-Identifier: GPL-2.0 */
/* The lives of the locks acquire mode sees: a lock address gets a new
 * generation when it is initialised again or when the slab object holding it
 * is freed, so a reused address is not taken for the lock it replaced. */
#ifndef LOCKSCOPE_LIFETIMES_BPF_H
#define LOCKSCOPE_LIFETIMES_BPF_H

#include "places.bpf.h"

/* Re-initialisations seen per lock address; LRU so it never fills. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, u64);
	__type(value, u32);
} generations SEC(".maps");

static __always_inline u32 generation_of(u64 lock)
{
	u32 *g = bpf_map_lookup_elem(&generations, &lock);
	return g ? *g : 0;
}

/* The addresses of the locks acquired, by page: bit i of a page's slots is
 * the 4-byte slot at offset 4 * i (a spinlock_t may sit at any 4-byte
 * boundary). Freeing an object walks the slots it covers. LRU: an evicted
 * page only means a later free of it is not seen. */
#define SLOT_SHIFT 2
#define SLOTS_PER_PAGE (1 << (PAGE_SHIFT - SLOT_SHIFT))
#define SLOT_WORDS (SLOTS_PER_PAGE / 64)

struct lock_slots {
	u64 word[SLOT_WORDS];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, u64);
	__type(value, struct lock_slots);
} lock_pages SEC(".maps");

/* Which pages have held an acquired lock: one bit per page number's low 20
 * bits (the direct map's pages are consecutive, so 4 GiB of it get a bit
 * each; elsewhere two pages may share one, which only costs a walk). Bits are
 * never cleared. A free or lock init in a page that never held a lock the
 * trace saw ends none of its locks: it returns after this array lookup (which
 * the verifier inlines), before any hash-map lookup or loop. */
#define LOCK_PAGE_WORDS (1 << 14)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LOCK_PAGE_WORDS);
	__type(key, u32);
	__type(value, u64);
} lock_page_bits SEC(".maps");

static __always_inline u64 *lock_page_word(u64 page)
{
	u32 index = (page >> 6) & (LOCK_PAGE_WORDS - 1);
	return bpf_map_lookup_elem(&lock_page_bits, &index);
}

/* Objects larger than this are walked only this far. */
#define MAX_FREED_PAGES 4

/* Whether any page of [first, last] may have held an acquired lock. */
static __always_inline bool pages_held_locks(u64 first, u64 last)
{
	for (int i = 0; i <= MAX_FREED_PAGES; i++) {
		u64 page = first + i;
		if (page > last)
			break;
		u64 *word = lock_page_word(page);
		if (!word || (*word & (1ULL << (page & 63))))
			return true;
	}
	return false;
}

static __always_inline void remember_address(u64 lock)
{
	u64 page = lock >> PAGE_SHIFT;
	u64 *bits = lock_page_word(page);
	if (bits && !(*bits & (1ULL << (page & 63))))
		__sync_fetch_and_or(bits, 1ULL << (page & 63));
	struct lock_slots *slots = bpf_map_lookup_elem(&lock_pages, &page);
	if (!slots) {
		struct lock_slots none = {};
		bpf_map_update_elem(&lock_pages, &page, &none, BPF_NOEXIST);
		slots = bpf_map_lookup_elem(&lock_pages, &page);
		if (!slots)
			return;
	}
	u32 slot = (lock & ((1 << PAGE_SHIFT) - 1)) >> SLOT_SHIFT;
	u64 bit = 1ULL << (slot & 63);
	u64 *word = &slots->word[(slot >> 6) & (SLOT_WORDS - 1)];
	if (!(*word & bit))
		__sync_fetch_and_or(word, bit);
}

/* A new lock at an address: later acquisitions belong to a new generation.
 * Only addresses whose page held an acquired lock need one: the generation
 * tells apart the lives of an address that were acquired, and the first such
 * acquisition marks the page before any later init or free of it. */
static __always_inline int record_init(u64 lock)
{
	u32 *g = bpf_map_lookup_elem(&generations, &lock);
	if (g) {
		__sync_fetch_and_add(g, 1);
	} else {
		u32 first = 1;
		bpf_map_update_elem(&generations, &lock, &first, BPF_NOEXIST);
	}
	return 0;
}

/* One word of a freed range's slots, for retire_slot. */
struct freed_word {
	u64 page;
	u64 bits;
	u32 word;
};

static long retire_slot(u32 bit, struct freed_word *w)
{
	if (!(w->bits & (1ULL << (bit & 63))))
		return 0;
	u64 slot = w->word * 64 + (bit & 63);
	record_init((w->page << PAGE_SHIFT) | (slot << SLOT_SHIFT));
	count(C_FREED_LOCKS);
	return 0;
}

/* A freed object's range, for retire_page. */
struct freed_range {
	u64 first_page;
	u64 object;
	u64 end;
};

/* One page of it, for retire_word: the page's slots [lo, hi) are inside,
 * in its words from first_word on. */
struct freed_page {
	u64 page;
	u32 lo;
	u32 hi;
	u32 first_word;
	struct lock_slots slots;
};

static long retire_word(u32 i, struct freed_page *p)
{
	u32 word = p->first_word + i;
	u32 from = (word & (SLOT_WORDS - 1)) * 64, to = from + 64;
	if (to <= p->lo || from >= p->hi)
		return 0;
	u64 bits = p->slots.word[word & (SLOT_WORDS - 1)];
	if (p->lo > from)
		bits &= ~0ULL << ((p->lo - from) & 63);
	if (p->hi < to)
		bits &= ~0ULL >> ((to - p->hi) & 63);
	if (bits) {
		struct freed_word w = { .page = p->page, .bits = bits, .word = word & (SLOT_WORDS - 1) };
		bpf_loop(64, retire_slot, &w, 0);
	}
	return 0;
}

/* The locks of page first_page + i inside the freed range end; 1 (stop)
 * past its end. */
static long retire_page(u32 i, struct freed_range *r)
{
	struct freed_page p = { .page = r->first_page + i };
	if (p.page << PAGE_SHIFT >= r->end)
		return 1;
	struct lock_slots *slots = bpf_map_lookup_elem(&lock_pages, &p.page);
	if (!slots)
		return 0;
	p.slots = *slots;
	p.lo = p.page == r->first_page ? (r->object & ((1 << PAGE_SHIFT) - 1)) >> SLOT_SHIFT : 0;
	p.hi = (r->end >> PAGE_SHIFT) == p.page ? (r->end & ((1 << PAGE_SHIFT) - 1)) >> SLOT_SHIFT : SLOTS_PER_PAGE;
	/* Only the words the object covers: a small object's one or two, not the page's 16. */
	p.first_word = p.lo / 64;
	bpf_loop((p.hi + 63) / 64 - p.first_word, retire_word, &p, 0);
	return 0;
}

/* The slab object [object, object + size) is freed: every lock acquired
 * inside it ends, and its address starts a new generation. */
static __always_inline int record_free(u64 object, u32 size)
{
	if (!object || !size || !pages_held_locks(object >> PAGE_SHIFT, (object + size - 1) >> PAGE_SHIFT))
		return 0;
	struct freed_range r = { .first_page = object >> PAGE_SHIFT, .object = object, .end = object + size };
	bpf_loop(MAX_FREED_PAGES + 1, retire_page, &r, 0);
	return 0;
}

/* An object of the slab cache `cache` is freed. */
static __always_inline int record_slab_free(struct kmem_cache *cache, u64 object)
{
	return record_free(object, cache ? BPF_CORE_READ(cache, object_size) : 0);
}

/* kmem_cache_free_bulk's objects, for free_one. */
struct bulk_free {
	struct kmem_cache *cache; /* NULL: each object's own (kfree_bulk) */
	u64 objects;              /* void ** */
	u64 n;
};

/* Bulk frees walked at most this far (kfree_rcu's batches are ~500). */
#define MAX_BULK_FREE 1024

static long free_one(u32 i, struct bulk_free *b)
{
	if (i >= b->n)
		return 1;
	u64 object = 0;
	if (bpf_probe_read_kernel(&object, sizeof(object), (void *)(b->objects + i * sizeof(u64))))
		return 0;
	struct kmem_cache *cache = b->cache ? b->cache : cache_of(object);
	if (!cache) {
		count(C_UNSIZED_FREES);
		return 0;
	}
	record_slab_free(cache, object);
	return 0;
}

static __always_inline int record_bulk_free(struct kmem_cache *cache, u64 n, u64 objects)
{
	/* A cache not in cache_infos never held a lock the trace acquired
	 * (note_place lists every one that did): its objects have nothing to
	 * end and are not walked one by one (the maple tree's nodes, mostly). */
	u64 key = (u64)cache;
	if (cache && slabs_told() && !bpf_map_lookup_elem(&cache_infos, &key))
		return 0;
	struct bulk_free b = { .cache = cache, .objects = objects, .n = n };
	bpf_loop(MAX_BULK_FREE, free_one, &b, 0);
	return 0;
}

#endif
