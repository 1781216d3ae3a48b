#!/usr/bin/env bash
# `cmake --install` into a temporary prefix, then compile and train moons with the
# installed tools, from a directory outside the source tree. The installed ddpmc
# must compile against its installed headers, never the source tree's.
# Usage: tests/install_test.sh CMAKE BUILD_DIR SOURCE_DIR SANITIZE   (run by ctest; SANITIZE is
# the build's DDPM_SANITIZE, ON or OFF)
set -euo pipefail
cmake_bin=$1 build=$2 source=$3 sanitize=${4:-OFF}
prefix=$(mktemp -d "${TMPDIR:-/tmp}/ddpmc-install.XXXXXX")
trap 'rm -rf "$prefix"' EXIT
fail() { echo "install test: $*" >&2; exit 1; }

"$cmake_bin" --install "$build" --prefix "$prefix" > /dev/null
for f in bin/ddpmc bin/ddpm-train bin/ddpm-sample bin/ddpm-eval; do
  [ -x "$prefix/$f" ] || fail "$f was not installed"
done
for f in include/ddpmc/ddpm_prelude.h include/ddpmc/ddpm_abi.h include/ddpmc/gemm.h \
         share/ddpmc/stdlib/std.ddpm share/ddpmc/models/moons.ddpm; do
  [ -f "$prefix/$f" ] || fail "$f was not installed"
done

cd "$prefix"
unset DDPMC_PRELUDE_DIR
spec="$prefix/share/ddpmc/models/moons.ddpm"
log=$("$prefix/bin/ddpmc" compile "$spec" -o "$prefix/moons.so" --cache-dir "$prefix/cache" -v 2>&1) ||
  fail "ddpmc compile failed: $log"
grep -q -- "-I'$prefix/include/ddpmc'" <<< "$log" || fail "the installed ddpmc did not use $prefix/include/ddpmc: $log"
if grep -q "$source/common" <<< "$log"; then fail "the installed ddpmc used the source tree: $log"; fi

"$prefix/bin/ddpm-train" "$spec" --cache-dir "$prefix/cache" --steps 200 --batch 64 --threads 2 -q \
  --out "$prefix/run" 2> "$prefix/train.log" || fail "ddpm-train failed: $(cat "$prefix/train.log")"
[ -f "$prefix/run/checkpoint.safetensors" ] || fail "no checkpoint after training"
"$prefix/bin/ddpm-sample" "$prefix/run" --sampler ddim --steps 20 -n 100 --out "$prefix/s.npy" -q 2> /dev/null ||
  fail "ddpm-sample failed"
[ -s "$prefix/s.npy" ] || fail "no samples"

# Portability: the installed tools and runtime build for the baseline, so they run on a CPU without
# AVX. Run them under qemu-user with an x86-64-v2 CPU model (Nehalem: SSE4.2, no AVX; an AVX
# instruction there is SIGILL) with modules built for x86-64-v2: check, train 200 steps, sample.
# The build says whether it is sanitized (no `ldd | grep -q` under pipefail: grep exits at the first
# match, ldd dies of SIGPIPE, and the sanitized build ran under qemu, where the kernel killed it).
if [ "$sanitize" = ON ]; then
  echo "install test: a sanitizer build (ASan's shadow memory does not map under qemu-user): the x86-64-v2 run is the Release build's"
elif [ "$(uname -m)" = x86_64 ] && command -v qemu-x86_64 > /dev/null; then
  q=(qemu-x86_64 -cpu Nehalem)
  export DDPMC_MARCH=x86-64-v2
  "${q[@]}" "$prefix/bin/ddpmc" check "$spec" > "$prefix/check.log" 2>&1 ||
    fail "ddpmc check under ${q[*]} failed: $(tail -3 "$prefix/check.log")"
  "${q[@]}" "$prefix/bin/ddpm-train" "$spec" --cache-dir "$prefix/cache" --steps 200 --batch 64 --threads 2 -q \
    --out "$prefix/run-v2" > "$prefix/train-v2.log" 2>&1 || fail "ddpm-train under ${q[*]} failed: $(tail -3 "$prefix/train-v2.log")"
  "${q[@]}" "$prefix/bin/ddpm-sample" "$prefix/run-v2" --sampler ddim --steps 20 -n 100 --out "$prefix/s2.npy" -q \
    > "$prefix/sample-v2.log" 2>&1 || fail "ddpm-sample under ${q[*]} failed: $(tail -3 "$prefix/sample-v2.log")"
  [ -s "$prefix/s2.npy" ] || fail "no samples under ${q[*]}"
  echo "install test: the installed tools ran under ${q[*]} (x86-64-v2)"
else
  echo "install test: qemu-x86_64 not found (tools/deps.sh installs qemu-user): the x86-64-v2 run was skipped"
fi
echo "install test: ok ($prefix)"
