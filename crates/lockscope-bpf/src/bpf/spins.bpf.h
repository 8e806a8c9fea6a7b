/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Who holds a spinlock (or rwlock), for acquire mode's waits: the lock word
 * names no owner, but a holder cannot leave its CPU until it unlocks
 * (preemption is off), so each CPU keeps the spinning locks it holds, written
 * at the acquisition and cleared at the unlock, and a waiter looks for the
 * lock on the other CPUs. Only the traced workloads' acquisitions outside
 * interrupt context are kept: a holder found is a workload's process.
 */
#ifndef LOCKSCOPE_SPINS_BPF_H
#define LOCKSCOPE_SPINS_BPF_H

#include "workloads.bpf.h"

#define MAX_SPINS_HELD 8 /* spinning locks nested on one CPU */
#define MAX_SPIN_CPUS 256

struct cpu_spins {
	u64 lock[MAX_SPINS_HELD];
	struct holder holder; /* the task holding them */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct cpu_spins);
} spins_held SEC(".maps");

/* This CPU's task, of `workload`, acquired the spinning lock `lock`. */
static __always_inline void spin_acquired(u64 lock, u32 workload)
{
	u32 zero = 0;
	struct cpu_spins *s = bpf_map_lookup_elem(&spins_held, &zero);
	if (!s)
		return;
	for (int i = 0; i < MAX_SPINS_HELD; i++) {
		if (s->lock[i])
			continue;
		s->holder.workload = workload;
		s->holder.tgid = bpf_get_current_pid_tgid() >> 32;
		s->lock[i] = lock;
		return;
	}
	count(C_NESTING_OVERFLOW);
}

/* `lock` is being released on this CPU (a no-op for locks not kept here). */
static __always_inline void spin_released(u64 lock)
{
	u32 zero = 0;
	struct cpu_spins *s = bpf_map_lookup_elem(&spins_held, &zero);
	if (!s)
		return;
	for (int i = 0; i < MAX_SPINS_HELD; i++) {
		if (s->lock[i] == lock) {
			s->lock[i] = 0;
			return;
		}
	}
}

/* The workload process holding the spinning lock `lock` on another CPU;
 * tgid 0 when none of them does (another process, interrupt context). */
static __always_inline struct holder spin_holder(u64 lock)
{
	struct holder none = {};
	u32 zero = 0, me = bpf_get_smp_processor_id();
	for (u32 cpu = 0; cpu < MAX_SPIN_CPUS; cpu++) {
		if (cpu == me)
			continue;
		struct cpu_spins *s = bpf_map_lookup_percpu_elem(&spins_held, &zero, cpu);
		if (!s)
			break; /* past the last CPU */
		for (int i = 0; i < MAX_SPINS_HELD; i++) {
			if (s->lock[i] == lock)
				return s->holder;
		}
	}
	return none;
}

#define SPIN_HOLDER(lock) spin_holder(lock)

#endif
