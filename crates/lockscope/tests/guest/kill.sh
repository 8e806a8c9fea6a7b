# A recording killed outright (SIGKILL): its programs must go with it, as
# their links are file descriptors of the dead process. See tests/guest.rs.
L=lockscope
$L record --mode acquire --locks mutex -o /out/killed --run a="$L workload pipe --duration 120s" &
recorder=$!
sleep 12
bpftool prog show > /out/progs-while-recording.txt
kill -9 $recorder
sleep 3
bpftool prog show > /out/progs-after-kill.txt
