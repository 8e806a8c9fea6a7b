# A recording killed outright (SIGKILL): its programs must go with it, as
# their links are file descriptors of the dead process. See tests/guest.rs.
# The workload sleeps: detaching fexit programs while a workload hammers the
# traced mutexes has stalled this TCG guest's kernel (see the issue notes).
L=lockscope
$L record --mode acquire --locks mutex -o /out/killed --run a="sleep 120" &
recorder=$!
# The workload runs once the programs are attached (loading them takes a
# while under TCG, longer as lockscope hooks more functions).
for i in $(seq 60); do
  pidof sleep > /dev/null && break
  sleep 1
done
bpftool prog show > /out/progs-while-recording.txt
kill -9 $recorder
sleep 3
bpftool prog show > /out/progs-after-kill.txt
kill -9 $(pidof sleep) 2>/dev/null || true
