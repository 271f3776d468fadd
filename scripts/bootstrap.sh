#!/usr/bin/env bash
# Installs what building and testing lvs needs, and says what it does.
# Safe to run again: each step checks first and skips what is already there.
#
# Steps:
#   1. Debian packages the lab and the tests use (bpftool, iproute2, ethtool, curl, python3,
#      chromium, which the health end-to-end test drives headless to load the status page, and
#      keepalived, whose `keepalived -t` checks the VRRP file the keepalived import writes,
#      and bird2, the BGP daemon of the scale-out test and of `lvs bgp-config`'s check; its
#      service is left disabled and stopped: the tests start their own BIRDs).
#   2. The rust-src component, because the eBPF crate is built with -Z build-std=core.
#   3. bpf-linker, built against the LLVM that ships inside the Rust toolchain, so that the
#      bitcode rustc emits and the linker that reads it agree on the LLVM version.
#   4. With --fuzz only (`cargo xtask fuzz`): the nightly toolchain with rust-src (libFuzzer's
#      instrumentation is nightly-only, and the fuzz build builds the eBPF object with it too)
#      and cargo-fuzz.
set -euo pipefail

FUZZ=0
case ${1:-} in
  "") ;;
  --fuzz) FUZZ=1 ;;
  *) printf '[bootstrap] unknown option %s (want --fuzz or nothing)\n' "$1" >&2; exit 2 ;;
esac

say() { printf '[bootstrap] %s\n' "$*" >&2; }

need_root_for_apt() {
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then echo sudo; else
      say "not root and no sudo: cannot install Debian packages; install them by hand: $*"
      exit 1
    fi
  fi
}

install_debian_packages() {
  # command name -> Debian package providing it
  local -A wanted=(
    [bpftool]=bpftool [ip]=iproute2 [ethtool]=ethtool [curl]=curl [python3]=python3
    [nsenter]=util-linux [chromium]=chromium [keepalived]=keepalived [bird]=bird2
  )
  local missing=()
  for cmd in "${!wanted[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${wanted[$cmd]}")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "Debian packages: all present"
    return
  fi
  local sudo
  sudo=$(need_root_for_apt "${missing[@]}")
  say "Debian packages: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian enables and starts BIRD's service on install; lvs's tests run their own BIRDs,
  # and a director's BIRD is configured by its operator (`lvs bgp-config`).
  if [[ " ${missing[*]} " == *" bird2 "* ]] && command -v systemctl >/dev/null 2>&1; then
    say "bird2: leaving its service disabled and stopped"
    $sudo systemctl disable --now bird.service >/dev/null 2>&1 || true
  fi
}

install_rust_src() {
  if rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
    say "rust-src: present"
  else
    say "rust-src: installing (needed for -Z build-std=core on bpfel-unknown-none)"
    rustup component add rust-src
  fi
}

# bpf-linker links dynamically against libLLVM and keeps an rpath into the toolchain it was
# built for. When the toolchain is updated that library disappears, so "present" means "runs".
bpf_linker_works() {
  command -v bpf-linker >/dev/null 2>&1 && bpf-linker --version >/dev/null 2>&1
}

install_bpf_linker() {
  if bpf_linker_works; then
    say "bpf-linker: present ($(bpf-linker --version 2>/dev/null | head -n1))"
    return
  fi
  local sysroot libllvm major prefix
  sysroot=$(rustc --print sysroot)
  libllvm=$(find "$sysroot/lib" -maxdepth 1 -name 'libLLVM.so.*' -print -quit)
  if [ -z "$libllvm" ]; then
    libllvm=$(find "$sysroot/lib" -maxdepth 1 -name 'libLLVM-*.so' -print -quit)
  fi
  [ -n "$libllvm" ] || { say "no libLLVM in $sysroot/lib; cannot build bpf-linker"; exit 1; }
  major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
  prefix="${XDG_CACHE_HOME:-$HOME/.cache}/lvs/llvm-$major"
  mkdir -p "$prefix/lib"
  ln -sf "$libllvm" "$prefix/lib/libLLVM.so"
  ln -sf "$libllvm" "$prefix/lib/$(basename "$libllvm")"
  say "bpf-linker: building against the toolchain's LLVM $major (about a minute)"
  LLVM_PREFIX="$prefix" cargo install bpf-linker@0.13.0 --locked --force \
    --no-default-features --features "llvm-$major"
  bpf_linker_works || { say "bpf-linker was built but does not run"; exit 1; }
}

# The nightly's LLVM must be one bpf-linker reads, as for stable: the fuzz build links the
# eBPF object with the same bpf-linker.
install_fuzzing() {
  if rustup run nightly rustc --version >/dev/null 2>&1; then
    say "nightly toolchain: present ($(rustup run nightly rustc --version))"
  else
    say "nightly toolchain: installing (libFuzzer's instrumentation needs it)"
    rustup toolchain install nightly --profile minimal
  fi
  if rustup component list --installed --toolchain nightly 2>/dev/null | grep -q '^rust-src'; then
    say "nightly rust-src: present"
  else
    say "nightly rust-src: installing (the fuzz build builds the eBPF object with the nightly)"
    rustup component add rust-src --toolchain nightly
  fi
  if cargo fuzz --version >/dev/null 2>&1; then
    say "cargo-fuzz: present ($(cargo fuzz --version))"
  else
    say "cargo-fuzz: installing (about two minutes)"
    cargo install cargo-fuzz@0.13.2 --locked
  fi
}

install_debian_packages
install_rust_src
install_bpf_linker
if (( FUZZ )); then install_fuzzing; fi
say "done"
