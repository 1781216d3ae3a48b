#!/usr/bin/env bash
# Installs the Debian packages ddpmc needs, if any are missing. Sourced by
# tools/demo.sh and tools/test.sh; safe to run again (it installs nothing then).
# Usage: tools/deps.sh [extra-package ...]
set -euo pipefail
pkgs=(g++ cmake make pkg-config libxsimd-dev libtbb-dev libfmt-dev doctest-dev libbenchmark-dev
      libcli11-dev nlohmann-json3-dev libspng-dev zlib1g-dev dataset-fashion-mnist strace
      clang libclang-rt-dev libcairo2-dev libxxhash-dev libopenmpi-dev openmpi-bin "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "ddpmc: installing missing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
