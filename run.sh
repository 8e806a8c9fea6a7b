#!/usr/bin/env bash
# The main job on a fresh machine: set up, build, and measure the paper's
# file-metadata experiment — two identical file-churn workloads side by side —
# then report the kernel locks they share and those each keeps private.
# Output goes to ${1:-lockscope-out}/.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
cargo build --release -q -p lockscope
bin=target/release/lockscope
out=${1:-lockscope-out}
mkdir -p "$out"
"$bin" doctor
"$bin" record --force -o "$out/file-churn.trace" \
  --run a="$bin workload file-churn --dir $out/work-a --duration 20s" \
  --run b="$bin workload file-churn --dir $out/work-b --duration 20s"
"$bin" report "$out/file-churn.trace" | tee "$out/report.txt"
"$bin" report "$out/file-churn.trace" --format json > "$out/report.json"
"$bin" report "$out/file-churn.trace" --format csv > "$out/report.csv"
rm -rf "$out/work-a" "$out/work-b"
echo "report: $out/report.txt (json, csv beside it; trace: $out/file-churn.trace)" >&2
