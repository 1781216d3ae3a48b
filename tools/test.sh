#!/usr/bin/env bash
# Builds and runs every test. Installs missing packages first. CI runs this.
#  1. Release build at the machine's width (DDPM_MARCH=native): the whole suite, plus the kernel
#     and model tests again at every narrower x86-64 level the machine can run (DDPM_EXTRA_MARCHES:
#     x86-64-v3 and x86-64-v2 on an AVX-512 machine, x86-64-v2 on an AVX2 one), so one machine
#     proves the SIMD widths below its own (16, 8 and 4 float lanes).
#  2. AddressSanitizer + UndefinedBehaviorSanitizer build: the whole suite at native width except
#     the six model-quality tests (train to a sample-quality threshold: their point is numerics,
#     which stage 1 checks; their code paths, training and sampling loops, run under the
#     sanitizers in shorter tests). They took 4 of the stage's 19 minutes, and CI has 45.
#  3. libFuzzer over the front end for 60 s (tools/fuzz.sh; FUZZ_SECONDS changes it).
#  4. The prelude's kernel tests cross-built for aarch64 and run under qemu-aarch64
#     (tools/test_aarch64.sh; skipped where the cross compiler or qemu is missing).
# Ends with each stage's ctest summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh --tests
tools/deps_arm64.sh  # qemu-user (also for the install test's x86-64-v2 run), the aarch64 cross compiler, oneTBB arm64
jobs=$(nproc)
started=$SECONDS

# x86-64 levels below this CPU's own (the kernel tests at 8 and 4 lanes on an AVX-512 machine).
extra=""
if [ "$(uname -m)" = x86_64 ]; then
  flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
  has() { grep -qw "$1" <<< "$flags"; }
  if has avx512f && has avx512bw && has avx512dq && has avx512vl; then extra="x86-64-v3;x86-64-v2"
  elif has avx2 && has fma; then extra="x86-64-v2"; fi
fi

summaries=()
run_ctest() {  # DIR LABEL [CTEST ARGS...]: ctest in DIR, keeps its summary line
  local dir="$1" label="$2" status=0
  shift 2
  local log="$dir/ctest.log"
  (cd "$dir" && ctest --output-on-failure -j1 --timeout 900 "$@") 2>&1 | tee "$log" || status=$?
  summaries+=("$label: $(grep -E '^[0-9]+% tests passed' "$log" || echo "no ctest summary")")
  return "$status"
}

echo "== tests in build (Release, native width; kernel and model tests also at: ${extra:-no narrower width}) =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DDDPM_BUILD_TESTS=ON -DDDPM_BUILD_BENCHMARKS=ON -DDDPM_SANITIZE=OFF -DDDPM_MARCH=native "-DDDPM_EXTRA_MARCHES=$extra" > /dev/null
cmake --build build -j"$jobs"
run_ctest build "Release (native${extra:+; $extra})"

echo "== tests in build-asan (Debug, AddressSanitizer + UndefinedBehaviorSanitizer) =="
# Its tests compile modules into stage 1's cache (the key holds the generated source, compiler,
# flags and prelude, not the build type): each module compiles once per run.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DDDPM_BUILD_TESTS=ON -DDDPM_SANITIZE=ON -DDDPM_MARCH=native "-DDDPM_EXTRA_MARCHES=" \
  "-DDDPM_TEST_CACHE_DIR=$PWD/build/test-cache" > /dev/null
cmake --build build-asan -j"$jobs"
asan_skip="near the data|approach the data|within 10% of ddim|fid sanity"
run_ctest build-asan "ASan+UBSan (all but the $(cd build-asan && ctest -N -R "$asan_skip" | grep -c 'Test *#') model-quality tests)" -E "$asan_skip"

echo "== fuzzing the front end (libFuzzer, clang, ASan+UBSan) =="
tools/fuzz.sh "${FUZZ_SECONDS:-60}"

echo "== the prelude's kernel tests on aarch64 (cross-built, qemu-aarch64) =="
aarch64_log=$(mktemp)
aarch64_status=0
tools/test_aarch64.sh 2>&1 | tee "$aarch64_log" || aarch64_status=$?
summaries+=("$(tail -1 "$aarch64_log")")
rm -f "$aarch64_log"

echo "== summary ($(( (SECONDS - started) / 60 )) min) =="
printf '%s\n' "${summaries[@]}"
exit "$aarch64_status"
