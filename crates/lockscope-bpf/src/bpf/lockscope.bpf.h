/* SPDX-License-Identifier: GPL-2.0 */
/* The few kernel types lockscope's BPF programs touch, relocated by CO-RE at
 * load time, and the layout shared with user space (see src/abi.rs). */
#ifndef LOCKSCOPE_BPF_H
#define LOCKSCOPE_BPF_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

typedef __u8 u8;
typedef __u32 u32;
typedef __s32 s32;
typedef __s64 s64;
typedef __u64 u64;
typedef _Bool bool;
#define true 1
#define false 0

typedef struct { int counter; } atomic_t;

struct signal_struct {
	atomic_t live;
} __attribute__((preserve_access_index));

/* x86-64 registers at a kprobe: first argument, return value, stack pointer. */
struct pt_regs {
	unsigned long ax;
	unsigned long di;
	unsigned long si;
	unsigned long dx;
	unsigned long sp;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	struct signal_struct *signal;
} __attribute__((preserve_access_index));

struct kmem_cache_order_objects {
	unsigned int x; /* order << 16 | objects per slab */
} __attribute__((preserve_access_index));

struct kmem_cache {
	unsigned int size;        /* an object's slot, with padding and debug fields */
	unsigned int object_size; /* the object itself */
	unsigned int red_left_pad;
	struct kmem_cache_order_objects oo;  /* preferred slab order */
	struct kmem_cache_order_objects min; /* fallback slab order */
	const char *name;
} __attribute__((preserve_access_index));

/* Limits; user space may raise map sizes before load. */
#define MAX_WORKLOADS 64
#define MAX_CGROUP_TARGETS 16
#define MAX_STACK_DEPTH 127 /* the kernel's default perf_event_max_stack */
#define MAX_NESTING 4
#define MAX_HELD 16

/* preempt_count bits (include/linux/preempt.h): preemption disabled, serving
 * a softirq, a hard IRQ, an NMI. */
#define PREEMPT_MASK 0xffU
#define SOFTIRQ_OFFSET (1U << 8)
#define HARDIRQ_MASK (0xfU << 16)
#define NMI_MASK (0xfU << 20)
#define IN_INTERRUPT (NMI_MASK | HARDIRQ_MASK | SOFTIRQ_OFFSET)

/* LCB_F_* flags of the contention tracepoints, also used to name lock kinds. */
#define LCB_F_SPIN (1U << 0)
#define LCB_F_READ (1U << 1)
#define LCB_F_WRITE (1U << 2)
#define LCB_F_RT (1U << 3)
#define LCB_F_PERCPU (1U << 4)
#define LCB_F_MUTEX (1U << 5)
/* lockscope's own flags, above the kernel's. */
enum lks_flag {
	LKS_F_INTERRUPT = 1U << 16, /* acquired in interrupt context (hard IRQ, NMI, softirq) */
	LKS_F_SAMPLE = 1U << 17,    /* a sampled stack's count, apportioned by user space */
};

/* Counters in the per-CPU `counters` array (user space reads their names
 * and number from the generated skeleton; see src/abi.rs). */
enum counter {
	C_EVENTS,          /* contention_begin seen for a tracked workload */
	C_MAP_FULL,        /* aggregate not stored: map full */
	C_MAP_BUSY,        /* aggregate not stored: map busy (re-entered on this CPU) */
	C_STACKS_FULL,     /* stack not stored: every slot of the stack store taken */
	C_STACK_ERROR,     /* stack not stored for another reason (fault, map busy) */
	C_STATE_BUSY,      /* per-task wait state unavailable */
	C_NESTING_OVERFLOW,/* more than MAX_NESTING waits in flight on one task */
	C_UNMATCHED_END,   /* end of a wait or hold whose beginning was not seen */
	C_TRACK_FULL,      /* forked child not tracked: tracked_tgids full */
	C_REENTERED,       /* skipped: a lockscope program was already running on this CPU */
	C_FREED_LOCKS,     /* lock addresses given a new generation by a slab free */
	C_UNSIZED_FREES,   /* bulk-freed objects not walked: their slab cache was not found */
	C_PLACES_FULL,     /* a lock's place or its cache's geometry not kept: map full */
	C_HOLDERS_FULL,    /* a wait not attributed to its lock's holder: holder_waits full */
	C_HOLDER_RELEASED, /* spinlock holder unnamed: the lock free at either read of its word */
	C_HOLDER_UNSEEN,   /* spinlock holder unnamed: a CPU in an interrupt or not seen yet */
	C_HOLDER_AMBIGUOUS,/* spinlock holder unnamed: the idle task, two processes, or none that could hold it */
	NR_COUNTERS,
};

struct agg_key {
	u32 workload;
	u32 tgid;
	u64 lock;
	u32 flags;      /* LCB_F_* lock kind */
	s32 stack_id;
	u32 generation; /* re-initialisations of the address seen (acquire mode) */
	u32 pad;
};

struct agg_val {
	u64 count;
	u64 wait_total_ns;
	u64 wait_max_ns;
	u64 hold_total_ns;
	u64 hold_max_ns;
	u64 failed;     /* failed trylocks, not counted in `count` */
	u64 first_ns;   /* first acquisition, ktime */
};

/* The process holding a lock a workload waited for. */
struct holder {
	u32 workload; /* its workload, 0: none (or unknown) */
	u32 tgid;     /* 0: not known (see holder_of) */
};

struct holder_key {
	u32 waiter; /* the waiting workload */
	struct holder holder;
	u32 flags;  /* LKS_F_INTERRUPT: waited while serving an interrupt */
	u64 lock;
};

struct holder_val {
	u64 count;
	u64 wait_total_ns;
};

struct cgroup_target {
	u64 id;
	u32 level;
	u32 workload;
};

#endif
