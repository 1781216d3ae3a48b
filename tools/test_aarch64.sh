#!/usr/bin/env bash
# Cross-builds the prelude's kernel tests (tests/cross: convolutions, Winograd, GEMM, prelude
# math) for aarch64 with Debian's cross compiler into build-aarch64/ and runs each test case
# under qemu-aarch64, i.e. xsimd's 4-lane NEON path. Prints ctest's summary line last; the exit
# status is ctest's (1, with a last line saying so, if configuring or building fails). Exits 0
# with "skipped: ..." where the cross compiler or qemu is absent.
# Packages: g++-aarch64-linux-gnu qemu-user libtbb-dev:arm64 (multiarch), libxsimd-dev doctest-dev.
# JOBS overrides the build's parallelism (default: nproc).
set -uo pipefail
cd "$(dirname "$0")/.."
for tool in aarch64-linux-gnu-g++ qemu-aarch64; do
  if ! command -v "$tool" > /dev/null; then
    echo "skipped: $tool not found (apt-get install g++-aarch64-linux-gnu qemu-user)"
    exit 0
  fi
done
build=build-aarch64
if ! cmake -S tests/cross -B "$build" -DCMAKE_TOOLCHAIN_FILE="$PWD/tests/cross/aarch64-toolchain.cmake" > /dev/null; then
  echo "aarch64 (qemu): configure failed (see the CMake error above)"
  exit 1
fi
if ! cmake --build "$build" -j"${JOBS:-$(nproc)}"; then
  echo "aarch64 (qemu): build failed"
  exit 1
fi
(cd "$build" && ctest --output-on-failure) 2>&1 | tee "$build/ctest.log"
status=${PIPESTATUS[0]}
echo "aarch64 (qemu): $(grep -E '^[0-9]+% tests passed' "$build/ctest.log" || echo "no ctest summary (status $status)")"
exit "$status"
