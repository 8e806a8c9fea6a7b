# Acquire-mode scenarios, run by `lockscope guest` inside Debian's 6.1 kernel
# (see tests/guest.rs). Each writes a JSON report to /out.
L=lockscope
W="$L workload"

# Each workload writes its own pipe: each pipe's mutex is private.
$L record --mode acquire --locks mutex -o /out/pipes \
  --run a="$W pipe --duration 2s" --run b="$W pipe --duration 2s"
$L report /out/pipes --format json --top 5 > /out/pipes.json

# The same with 8-frame stacks: the same call sites.
$L record --mode acquire --locks mutex --max-stack 8 -o /out/pipes-shallow \
  --run a="$W pipe --duration 2s" --run b="$W pipe --duration 2s"
$L report /out/pipes-shallow --format json --top 5 > /out/pipes-shallow.json

# One pipe (a FIFO) written by one workload and read by the other: shared.
mkfifo /tmp/fifo
$L record --mode acquire --locks mutex -o /out/fifo \
  --run writer="dd if=/dev/zero of=/tmp/fifo bs=64 count=20000" --run reader="dd if=/tmp/fifo of=/dev/null bs=64"
$L report /out/fifo --format json --top 5 > /out/fifo.json

# Two workloads writing one FIFO: acquire mode times the waits on its mutex
# too, and attributes each to the workload holding it.
mkfifo /tmp/shared.fifo
$L record --mode acquire --locks mutex -o /out/fifo-waits \
  --run a="$W pipe --writers 4 --duration 3s --fifo /tmp/shared.fifo" \
  --run b="$W pipe --writers 4 --duration 3s --fifo /tmp/shared.fifo"
$L report /out/fifo-waits --format json --top 3 > /out/fifo-waits.json
# The same FIFO with mutexes not asked for: their waits are not timed either.
$L record --mode acquire --locks spinlock,rwlock -o /out/fifo-no-mutex \
  --run a="$W pipe --writers 4 --duration 2s --fifo /tmp/shared.fifo" \
  --run b="$W pipe --writers 4 --duration 2s --fifo /tmp/shared.fifo"
$L report /out/fifo-no-mutex --format json --top 3 > /out/fifo-no-mutex.json

# File churn on one ext4 file system, each in its own directory.
$L record --mode acquire -o /out/files \
  --run a="$W file-churn --dir /mnt/disk/a --files 200 --duration 3s" \
  --run b="$W file-churn --dir /mnt/disk/b --files 200 --duration 3s"
$L report /out/files --format json --top 10 > /out/files.json

# The same with sampled stacks: exact counts per lock, shared out over the sampled call sites.
$L record --mode acquire --stack-sample 64 -o /out/files-sampled \
  --run a="$W file-churn --dir /mnt/disk/a2 --files 200 --duration 3s" \
  --run b="$W file-churn --dir /mnt/disk/b2 --files 200 --duration 3s"

# Page allocation churn.
$L record --mode acquire --locks spinlock -o /out/mem \
  --run a="$W mem --size 1m --total 64m --duration 3s" \
  --run b="$W mem --size 1m --total 64m --duration 3s"
$L report /out/mem --format json --top 10 > /out/mem.json

# Without stacks interrupt context is read from the preempt count.
$L record --mode acquire --no-stacks --locks spinlock -o /out/mem-nostacks \
  --run a="$W mem --size 1m --total 64m --duration 2s"
$L report /out/mem-nostacks --format json --top 1 > /out/mem-nostacks.json

bpftool prog show > /out/progs-after-record.txt

# The kprobe fallback, forced: the same private pipe mutexes.
$L record --mode acquire --hook kprobe --locks mutex -o /out/kprobe-pipes \
  --run a="$W pipe --duration 2s" --run b="$W pipe --duration 2s"
$L report /out/kprobe-pipes --format json --top 5 > /out/kprobe-pipes.json

# The kprobe fallback on file churn: freed inodes' locks still end.
$L record --mode acquire --hook kprobe --locks spinlock -o /out/kprobe-files \
  --run a="$W file-churn --dir /mnt/disk/a3 --files 200 --duration 3s" \
  --run b="$W file-churn --dir /mnt/disk/b3 --files 200 --duration 3s"

# Without lock lifetimes: no program on slab frees or lock inits.
$L record --mode acquire --no-lifetimes -o /out/files-no-lifetimes \
  --run a="$W file-churn --dir /mnt/disk/a4 --files 200 --duration 2s" \
  --run b="$W file-churn --dir /mnt/disk/b4 --files 200 --duration 2s"

# Without the unlock probes: the same private pipe mutexes, no hold times.
$L record --mode acquire --no-hold --locks mutex -o /out/nohold-pipes \
  --run a="$W pipe --duration 2s" --run b="$W pipe --duration 2s"
$L report /out/nohold-pipes --format json --top 5 > /out/nohold-pipes.json
