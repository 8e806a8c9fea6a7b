# data-caching (paper Table 7; CloudSuite's data caching): a memcached
# server and its client in one workload, over loopback TCP. The client asks
# for random keys of 1 KiB values, 90% gets and 10% sets. data-caching
# warms the cache with every key first (untimed); data-caching-cold does
# not, so gets miss and the client sets what it missed (cache-aside): the
# cache fills as the run goes. One operation: one request answered.
import atexit
import os
import random
import socket
import subprocess

MEMCACHED = need_program("memcached", "memcached")
KEYS, VALUE, BATCH = 20000, b"v" * 1024, 200
WARM_UP = not WORKLOAD.endswith("-cold")


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.reader = self.sock.makefile("rb")

    def set(self, key):
        self.sock.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(VALUE), VALUE))
        if self.reader.readline() != b"STORED\r\n":
            sys.exit(f"{WORKLOAD}: memcached did not store {key!r}")

    def get(self, key):
        """Whether the key was there."""
        self.sock.sendall(b"get %s\r\n" % key)
        line = self.reader.readline()
        if line.startswith(b"VALUE"):
            self.reader.read(int(line.split()[3]) + 2)
            line = self.reader.readline()
            return True
        if line != b"END\r\n":
            sys.exit(f"{WORKLOAD}: memcached answered {line!r}")
        return False


def start_server():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    # memcached refuses to run as root unless told which user to be.
    user = ["-u", "root"] if os.geteuid() == 0 else []
    server = subprocess.Popen([MEMCACHED, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "256", "-t", "2", *user])
    atexit.register(server.kill)
    # Generous: under emulation (a microVM without KVM) it starts slowly.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            return Client(port)
        except OSError:
            if server.poll() is not None:
                sys.exit(f"{WORKLOAD}: memcached exited with status {server.returncode}")
            time.sleep(0.05)
    sys.exit(f"{WORKLOAD}: memcached did not accept connections on port {port} within 30 s")


def setup():
    client = start_server()
    if WARM_UP:
        for i in range(KEYS):
            client.set(b"key%d" % i)
    return client, random.Random(0)


def operation(state):
    client, rng = state
    for _ in range(BATCH):
        key = b"key%d" % rng.randrange(KEYS)
        if rng.random() < 0.1:
            client.set(key)
        elif not client.get(key):
            client.set(key)
    return BATCH


serve("request", setup, operation)
