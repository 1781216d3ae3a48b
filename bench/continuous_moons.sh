#!/usr/bin/env bash
# Moons at one training budget: the discrete DDPM (models/moons.ddpm) against the
# continuous-time VP-SDE, EDM and rectified flow (models/moons_{vp,edm,flow}.ddpm), and
# the learned reverse variance (models/moons_learned_var.ddpm) against fixed ones.
# Each model trains for MINUTES (default 0.5) at 2 threads and batch 256, one after
# another; then each sampler draws 4000 points, and ddpm-eval --quality gives their
# sliced Wasserstein distance (SW1) to 4000 fresh points of the data, next to the
# floor (two fresh draws of the data). Then the learned-variance model's bound
# (ddpm-eval --bound, full sum, 1000 held-out points) with its learned variance and
# with the fixed one. Prints Markdown tables; nothing asserts on them.
# MODELS="moons moons_learned_var" runs only those models.
#
#   bench/continuous_moons.sh [BUILD_DIR] [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
MIN=${2:-0.5}
T=$B/tools
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uptime | sed 's/.*load average: //') load (1, 5, 15 min),"\
     "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(git rev-parse --short HEAD)"
echo
echo "| model | training steps in $MIN min | sampler | steps | net evaluations | SW1 | floor |"
echo "| --- | ---: | --- | ---: | ---: | ---: | ---: |"
# model  sampler  steps  evaluations
cases=(
  "moons ddpm 1000 1000"
  "moons ddim 50 50"
  "moons_vp em 100 100"
  "moons_vp ode 50 99"
  "moons_vp pc 100 200"
  "moons_edm heun 18 35"
  "moons_edm euler 35 35"
  "moons_flow euler 50 50"
  "moons_flow heun 25 50"
  "moons_learned_var learned 50 50"
  "moons_learned_var fixed_small 50 50"
  "moons_learned_var fixed_large 50 50"
)
trained=""
for c in "${cases[@]}"; do
  read -r model sampler steps evals <<< "$c"
  [[ -z "${MODELS:-}" || " $MODELS " == *" $model "* ]] || continue
  run=$OUT/$model
  if [[ " $trained " != *" $model "* ]]; then
    "$T/ddpm-train" "models/$model.ddpm" --data moons --minutes "$MIN" --steps 100000000 --batch 256 --threads 2 \
      --seed 1 --out "$run" > "$OUT/$model.train.log" 2>&1
    trained="$trained $model"
  fi
  done_steps=$(grep -oE 'after [0-9]+ steps' "$OUT/$model.train.log" | grep -oE '[0-9]+' | tail -1)
  "$T/ddpm-sample" "$run" --sampler "$sampler" --steps "$steps" -n 4000 --threads 2 --quiet \
    --out "$OUT/$model.$sampler.npy" > /dev/null 2>&1
  line=$("$T/ddpm-eval" "$run" --quality --samples "$OUT/$model.$sampler.npy" -n 4000 --threads 2 2>&1 |
         grep 'sliced Wasserstein')
  sw=$(sed -E 's/.*distance ([0-9.]+) .*/\1/' <<< "$line")
  floor=$(sed -E 's/.*floor ([0-9.]+).*/\1/' <<< "$line")
  echo "| \`$model\` | $done_steps | \`$sampler\` | $steps | $evals | $sw | $floor |"
done

[[ -z "${MODELS:-}" || " $MODELS " == *" moons_learned_var "* ]] || exit 0
echo
echo "| moons_learned_var: the bound with | nats/dim | L_0 |"
echo "| --- | ---: | ---: |"
for v in learned fixed; do
  line=$("$T/ddpm-eval" "$OUT/moons_learned_var" --bound --variance "$v" -n 1000 --threads 2 -q 2>&1 | grep 'nats/dim')
  echo "| $v variance | $(sed -E 's/nats\/dim ([0-9.-]+ ± [0-9.]+).*/\1/' <<< "$line") | $(sed -E 's/.*L_0 ([0-9.e-]+);.*/\1/' <<< "$line") |"
done
