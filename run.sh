#!/usr/bin/env bash
# The main job on a fresh machine: set up, build, and run `lockscope study`
# with its defaults — the paper's microbenchmarks, two identical instances at
# a time, on every isolation platform this machine has; recorded, compared,
# stressed and written up. Output goes to ${1:-lockscope-out}/ (report.html).
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh build
# The rest (runtimes, qemu, kernel sources, clangd, ...) installs meanwhile.
./setup.sh &
setup=$!
cargo build --release -q -p lockscope
wait "$setup"
bin=target/release/lockscope
out=${1:-lockscope-out}
"$bin" doctor
"$bin" study -o "$out"
echo "report: $out/report.html (report.json, CSV and Parquet tables, traces and stress results beside it)" >&2
