#!/usr/bin/env bash
# The main job, from a fresh checkout: install missing packages, build, compile
# models/moons.ddpm, train it, and write samples (.npy) and scatter plots (.png)
# to runs/moons/. Running it again retrains from scratch into the same folder.
# It installs and builds only what it runs: the packages of the tools (not those of
# the tests), and the three tools it calls, with build/ configured without the tests
# and benchmarks (tools/test.sh configures them back in).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DDDPM_BUILD_TESTS=OFF -DDDPM_BUILD_BENCHMARKS=OFF > /dev/null
cmake --build build -j"$(nproc)" --target ddpmc ddpm-train ddpm-sample
threads=$(nproc)
build/tools/ddpmc check models/moons.ddpm
build/tools/ddpmc compile models/moons.ddpm -o build/moons.so --emit-cpp build/moons.cpp
rm -rf runs/moons
build/tools/ddpm-train models/moons.ddpm --data moons --steps 10000 --batch 256 --threads "$threads" \
  --out runs/moons --log-every 1000
build/tools/ddpm-sample runs/moons --sampler ddpm -n 2000 --threads "$threads" \
  --out runs/moons/samples.npy --png runs/moons/samples.png
build/tools/ddpm-sample runs/moons --sampler ddim --steps 50 -n 2000 --threads "$threads" \
  --out runs/moons/ddim.npy --png runs/moons/ddim.png
echo "ddpmc: done. Samples: runs/moons/samples.png (DDPM, 1000 steps) and runs/moons/ddim.png (DDIM, 50 steps)"
