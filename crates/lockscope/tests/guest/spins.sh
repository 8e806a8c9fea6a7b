# Spinlock holders, in a guest of 3 vCPUs (see tests/guest.rs). Under
# single-threaded emulation a holder's vCPU is often switched out inside its
# critical section, so the other two spin on its lock and the second of them
# queues: that is when lock:contention_begin fires (the first waiter spins
# on the pending bit, untraced). Each spinning lock a traced workload holds
# is kept per CPU, so such a wait names the workload holding it.
L=lockscope
W="$L workload"

mkfifo /tmp/shared.fifo
$L record --mode acquire --locks spinlock,rwlock -o /out/spins \
  --run a="$W pipe --writers 4 --duration 4s --fifo /tmp/shared.fifo" \
  --run b="$W pipe --writers 4 --duration 4s --fifo /tmp/shared.fifo"
$L report /out/spins --format json --top 3 > /out/spins.json
