#!/usr/bin/env bash
# Runs the libFuzzer target over the compiler (what `ddpmc check` runs; tests/fuzz/) for a
# bounded time, and fails on any crash, sanitizer report, hang or input that would
# make the tools exit with status 70 (an internal error). Builds it with
# Debian's clang, AddressSanitizer and UndefinedBehaviorSanitizer in build-fuzz/.
# Seeds: every spec in models/ and tests/errors/ and every ```ddpm / ```text block
# of the language reference (compiler/README.md). tools/test.sh calls it.
# Usage: tools/fuzz.sh [SECONDS]   (default 60; FUZZ_SECONDS also works)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-${FUZZ_SECONDS:-60}}
dir=build-fuzz
CC=clang CXX=clang++ cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDDPM_FUZZ=ON > /dev/null
cmake --build "$dir" --target fuzz_frontend -j"$(nproc)"

seeds="$dir/fuzz-seeds"
corpus="$dir/fuzz-corpus"
rm -rf "$seeds"
mkdir -p "$seeds" "$corpus"
find models tests/errors -name '*.ddpm' -exec cp {} "$seeds/" \;
# Checkpoint-carried sources (JSON, the path of a run directory's spec) seeded from
# a spec with an import.
printf '{"main":"m.ddpm","files":{"m.ddpm":"import \\"lib/b\\"\\n%s","lib/b.ddpm":"fn twice(x) {\\n  return x + x\\n}\\n"}}' \
  "$(sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' models/moons.ddpm | awk '{printf "%s\\n", $0}')" > "$seeds/checkpoint_sources.json"
awk -v out="$seeds/reference" '
  /^ *```(ddpm|text)$/ { n++; file = sprintf("%s_%03d.ddpm", out, n); inside = 1; next }
  /^ *```/ { inside = 0; next }
  inside { sub(/^  /, ""); print > file }' compiler/README.md
echo "fuzzing the front end for ${seconds} s from $(ls "$seeds" | wc -l) seeds"
# -timeout: an input that takes 10 s is a hang; libFuzzer then exits non-zero, as
# it does on a crash. Crash inputs are written to $dir/.
"$dir/tests/fuzz_frontend" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$dir/" -print_final_stats=1 "$corpus" "$seeds"
