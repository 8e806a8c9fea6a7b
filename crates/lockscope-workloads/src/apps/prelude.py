# lockscope's application workloads: what every one shares. Each script
# defines setup() (untimed: it generates the inputs locally) and one
# operation (timed), then calls serve(). Lines are printed in the form of
# lockscope's meter (crates/lockscope-workloads/src/meter.rs): one JSON
# object per interval with --report-every, and the total at the end.
import argparse
import importlib
import json
import shutil
import sys
import time

# WORKLOAD, the workload's name, is set by lockscope between this prelude and the script.


def need(module, package, installer="apt-get install"):
    """Imports a module, or ends at once naming the package that has it (Debian's, unless told PyPI's: pip install)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        sys.exit(f"{WORKLOAD}: {e}: install it with `{installer} {package}`")


def need_program(program, package):
    """The program's path, or ends at once naming the Debian package that has it."""
    path = shutil.which(program)
    if path is None:
        sys.exit(f"{WORKLOAD}: {program} not found: install it with `apt-get install {package}`")
    return path


def _line(kind, unit, t, ops, seconds):
    rate = ops / seconds if seconds > 0 else 0.0
    record = {"kind": kind, "workload": WORKLOAD, "unit": unit, "t": t, "ops": ops, "seconds": seconds, "ops_per_sec": rate}
    print(json.dumps(record), flush=True)


def serve(unit, setup, operation):
    """Runs setup() untimed, then operation(state) -> ops done, until the budget is spent."""
    parser = argparse.ArgumentParser(prog=WORKLOAD)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--report-every", type=float)
    args = parser.parse_args()
    state = setup()
    start = time.monotonic()
    interval_start, interval, total, rounds = start, [0, 0.0], [0, 0.0], 0
    while rounds < args.rounds if args.rounds is not None else time.monotonic() - start < args.duration:
        began = time.monotonic()
        ops = operation(state)
        timed = time.monotonic() - began
        rounds += 1
        for acc in (interval, total):
            acc[0] += ops
            acc[1] += timed
        now = time.monotonic()
        if args.report_every is not None and now - interval_start >= args.report_every:
            _line("interval", unit, now - start, interval[0], interval[1])
            interval_start, interval = now, [0, 0.0]
    _line("total", unit, time.monotonic() - start, total[0], total[1])
