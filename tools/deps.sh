#!/usr/bin/env bash
# Installs the Debian packages ddpmc needs, if any are missing. Run by tools/demo.sh
# (the packages that build and run the tools) and by tools/test.sh with --tests (also
# those of the tests, the benchmarks, the fuzzer and the Fashion-MNIST data); safe to
# run again (it installs nothing then).
# Usage: tools/deps.sh [--tests] [extra-package ...]
set -euo pipefail
pkgs=(g++ cmake make pkg-config libxsimd-dev libtbb-dev libfmt-dev libcli11-dev nlohmann-json3-dev libspng-dev
      zlib1g-dev libcairo2-dev libeigen3-dev libxxhash-dev libopenmpi-dev openmpi-bin)
if [ "${1:-}" = --tests ]; then
  shift
  pkgs+=(doctest-dev libbenchmark-dev dataset-fashion-mnist strace clang libclang-rt-dev)
fi
pkgs+=("$@")
# A package counts as installed for this machine's architecture (or "all"): tools/test.sh also
# installs arm64 copies of some (libtbb-dev:arm64), which must not stand in for the native one.
arch=$(dpkg --print-architecture)
missing=()
# dpkg-query fails when either name is unknown (most packages have no ":all"), and grep -q in a
# pipeline under pipefail can SIGPIPE its writer: read its output whole, then match it.
for p in "${pkgs[@]}"; do
  status=$(dpkg-query -W -f='${Status}\n' "$p:$arch" "$p:all" 2>/dev/null || true)
  [[ "$status" == *"install ok installed"* ]] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "ddpmc: installing missing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
