// SPDX-License-Identifier: GPL-2.0
/* Empty programs `lockscope doctor` loads and attaches one at a time, to learn
 * which hooks this kernel really allows. */
#include "lockscope.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SEC("fentry/mutex_lock")
int lks_probe_fentry(u64 *ctx)
{
	return 0;
}

SEC("kprobe/mutex_lock")
int lks_probe_kprobe(void *ctx)
{
	return 0;
}

SEC("tp_btf/contention_begin")
int lks_probe_tpbtf(u64 *ctx)
{
	return 0;
}

SEC("tracepoint/lock/contention_begin")
int lks_probe_tp(void *ctx)
{
	return 0;
}
