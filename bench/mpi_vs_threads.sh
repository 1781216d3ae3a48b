#!/usr/bin/env bash
# Data parallelism on one 2-core machine, in one run: ddpm-train with 2 processes
# x 1 thread (mpirun) against 1 process x 2 threads, on the moons MLP and the
# fashion U-Net, at the same global batch and --slices 2 (so both runs compute the
# same bits), plus the gradient exchange alone (build/bench/mpi_exchange).
# Prints the load average before and after, and steps/s from each run's summary.
#
#   bench/mpi_vs_threads.sh [MOONS_STEPS] [UNET_STEPS]      (defaults 3000 and 12)
set -euo pipefail
cd "$(dirname "$0")/.."
moons_steps=${1:-3000}
unet_steps=${2:-12}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mpi="mpirun --allow-run-as-root --oversubscribe --bind-to none"
train=build/tools/ddpm-train
echo "load before: $(uptime)"
run() {  # name launcher threads model data batch steps
  local name=$1 launch=$2 threads=$3 model=$4 data=$5 batch=$6 steps=$7
  local line
  n=$((n + 1))
  line=$($launch $train "$model" --data "$data" --batch "$batch" --steps "$steps" --slices 2 --threads "$threads" \
           --ckpt-every 0 --log-every 1000000 --quiet --out "$out/run$n" 2>&1 | grep -E '^trained ' | cut -d';' -f1)
  echo "$name: $line"
}
n=0
# Compile (or find in the cache) both modules before any timing.
$train models/moons.ddpm --steps 1 --batch 2 --slices 1 --threads 1 --quiet --out "$out/warm_moons" > /dev/null 2>&1
$train models/fashion_unet.ddpm --data fashion-mnist --steps 1 --batch 2 --slices 1 --threads 1 --quiet \
  --out "$out/warm_unet" > /dev/null 2>&1
run "moons  batch 256, 1 process x 2 threads" "" 2 models/moons.ddpm moons 256 "$moons_steps"
run "moons  batch 256, 2 processes x 1 thread" "$mpi -np 2" 1 models/moons.ddpm moons 256 "$moons_steps"
run "U-Net  batch 64, 1 process x 2 threads" "" 2 models/fashion_unet.ddpm fashion-mnist 64 "$unet_steps"
run "U-Net  batch 64, 2 processes x 1 thread" "$mpi -np 2" 1 models/fashion_unet.ddpm fashion-mnist 64 "$unet_steps"
echo "gradient exchange alone (loopback, shared memory):"
$mpi -np 2 build/bench/mpi_exchange
echo "load after: $(uptime)"
