#!/usr/bin/env bash
# Builds and runs every test, twice: a Release build, then an AddressSanitizer +
# UndefinedBehaviorSanitizer build, then the libFuzzer target over the front end
# for 60 s (tools/fuzz.sh; FUZZ_SECONDS changes it). Installs missing packages
# first. CI runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
jobs=$(nproc)
for cfg in "build Release OFF" "build-asan Debug ON"; do
  set -- $cfg
  echo "== tests in $1 ($2, sanitizers $3) =="
  cmake -S . -B "$1" -DCMAKE_BUILD_TYPE="$2" -DDDPM_SANITIZE="$3" > /dev/null
  cmake --build "$1" -j"$jobs"
  (cd "$1" && ctest --output-on-failure -j1 --timeout 900)
done
echo "== fuzzing the front end (libFuzzer, clang, ASan+UBSan) =="
tools/fuzz.sh "${FUZZ_SECONDS:-60}"
