#!/usr/bin/env bash
# Installs what lockscope needs to build and run on a Debian 12 machine:
# clang (BPF programs), libelf/zlib (libbpf), bpftool (tests check no program
# stays attached), perf (benchmarks compare against `perf lock`).
# Idempotent: installs only what is missing. Run as root (or via sudo).
set -euo pipefail

packages=(clang llvm libelf-dev zlib1g-dev pkg-config bpftool linux-perf qemu-system-x86 busybox-static kmod e2fsprogs cpio)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
