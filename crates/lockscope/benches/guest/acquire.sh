# Acquire-mode cost, inside the Debian guest: each workload untraced, under
# acquire mode without stacks (with and without the unlock probes), with
# 8-frame stacks, with full (64-frame) stacks, with one stack in 64 after a
# lock's first 16, and with full stacks but no unlock probes; then beside its
# peer: klockstat (mutexes and rwsems, a stack per acquisition, system-wide)
# and lockscope on the same lock classes with stacks, with and without lock
# lifetimes (klockstat keeps none), in ROUNDS alternating rounds. The kernel
# times every lockscope recording's programs (--time-programs) and, in the
# peer rounds, klockstat's. See benches/acquire_overhead.rs.
L=lockscope
R="$L record --time-programs"
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-5}
run() { # name config workload-args...
  name=$1; config=$2; shift 2
  rm -rf /mnt/disk/w
  case $config in
    untraced) $L workload "$@" --duration ${SECS}s > /out/$name-$config.json ;;
    nohold) $R --mode acquire --no-stacks --no-hold -o /out/$name-$config.trace --run w="$L workload $* --duration ${SECS}s" > /out/$name-$config.json ;;
    acquire) $R --mode acquire --no-stacks -o /out/$name-$config.trace --run w="$L workload $* --duration ${SECS}s" > /out/$name-$config.json ;;
    shallow) $R --mode acquire --max-stack 8 -o /out/$name-$config.trace --run w="$L workload $* --duration ${SECS}s" > /out/$name-$config.json ;;
    stacks) $R --mode acquire -o /out/$name-$config.trace --run w="$L workload $* --duration ${SECS}s" > /out/$name-$config.json ;;
    sampled) $R --mode acquire --stack-sample 64 -o /out/$name-$config.trace --run w="$L workload $* --duration ${SECS}s" > /out/$name-$config.json ;;
    stacks-nohold) $R --mode acquire --no-hold -o /out/$name-$config.trace --run w="$L workload $* --duration ${SECS}s" > /out/$name-$config.json ;;
    mutex-rwsem) $R --mode acquire --locks mutex,rwsem -o /out/$name-$config.trace --run w="$L workload $* --duration ${SECS}s" > /out/$name-$config.json ;;
    mutex-rwsem-no-lifetimes) $R --mode acquire --locks mutex,rwsem --no-lifetimes -o /out/$name-$config.trace --run w="$L workload $* --duration ${SECS}s" > /out/$name-$config.json ;;
    klockstat)
      # Attached once its programs' links stop appearing for 5 s (its own
      # "Tracing" line sits in a block buffer until it exits); it prints
      # its table on SIGINT.
      klockstat > /out/$name-$config.txt 2>&1 &
      k=$!
      links=0; stable=0
      while [ $stable -lt 5 ] && kill -0 $k 2>/dev/null; do
        sleep 1
        now=$(ls -l /proc/$k/fd 2>/dev/null | grep -c bpf_link)
        if [ "$now" -gt 0 ] && [ "$now" -eq "$links" ]; then stable=$((stable + 1)); else stable=0; fi
        links=$now
      done
      echo "klockstat attached $links programs" >> /out/$name-$config.txt.attach
      $L workload "$@" --duration ${SECS}s > /out/$name-$config.json
      bpftool prog show --json > /out/$name-$config.progs.json
      kill -INT $k; wait $k ;;
  esac
}
for config in untraced nohold acquire shallow stacks sampled stacks-nohold; do
  run file-create $config file-churn --dir /mnt/disk/w --files 500
  run mmap $config mem --size 8k --total 32m
done
# The peers in alternating rounds, each with an untraced run of its own,
# with the kernel timing every BPF program run (both peers pay for it).
echo 1 > /proc/sys/kernel/bpf_stats_enabled
for round in $(seq $ROUNDS); do
  for config in untraced mutex-rwsem mutex-rwsem-no-lifetimes klockstat; do
    run file-create.$round $config file-churn --dir /mnt/disk/w --files 500
    run mmap.$round $config mem --size 8k --total 32m
  done
done
