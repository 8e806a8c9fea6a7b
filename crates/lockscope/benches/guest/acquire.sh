# Acquire-mode cost, inside the Debian guest: each workload untraced, under
# acquire mode without stacks (with and without the unlock probes), with
# 8-frame stacks, with full (64-frame) stacks, with one stack in 64 after a
# lock's first 16, and with full stacks but no unlock probes. See
# benches/acquire_overhead.rs.
L=lockscope
SECS=${SECS:-5}
run() { # name config workload-args...
  name=$1; config=$2; shift 2
  rm -rf /mnt/disk/w
  case $config in
    untraced) $L workload "$@" --duration ${SECS}s > /out/$name-$config.json ;;
    nohold) $L record --mode acquire --no-stacks --no-hold -o /out/$name-$config.trace --run w="$L workload $* --duration ${SECS}s" > /out/$name-$config.json ;;
    acquire) $L record --mode acquire --no-stacks -o /out/$name-$config.trace --run w="$L workload $* --duration ${SECS}s" > /out/$name-$config.json ;;
    shallow) $L record --mode acquire --max-stack 8 -o /out/$name-$config.trace --run w="$L workload $* --duration ${SECS}s" > /out/$name-$config.json ;;
    stacks) $L record --mode acquire -o /out/$name-$config.trace --run w="$L workload $* --duration ${SECS}s" > /out/$name-$config.json ;;
    sampled) $L record --mode acquire --stack-sample 64 -o /out/$name-$config.trace --run w="$L workload $* --duration ${SECS}s" > /out/$name-$config.json ;;
    stacks-nohold) $L record --mode acquire --no-hold -o /out/$name-$config.trace --run w="$L workload $* --duration ${SECS}s" > /out/$name-$config.json ;;
  esac
}
for config in untraced nohold acquire shallow stacks sampled stacks-nohold; do
  run file-create $config file-churn --dir /mnt/disk/w --files 500
  run mmap $config mem --size 8k --total 32m
done
