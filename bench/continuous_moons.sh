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
# MODELS="moons moons_learned_var" runs only those models. SEEDS="1 2 3" trains each model
# once per seed (default 1) and reports the mean SW1 with each seed's value: a 30 s run's
# SW1 varies by about 20% between seeds and with the VM's speed, more than the models differ.
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
     "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- models || echo " with models/ changed")"
echo
seeds=(${SEEDS:-1})
echo "Training seeds: ${seeds[*]}; SW1 is the mean over them (each seed's value in brackets)."
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
  sws=() done_steps=()
  for seed in "${seeds[@]}"; do
    run=$OUT/$model.s$seed
    if [[ " $trained " != *" $model.s$seed "* ]]; then
      "$T/ddpm-train" "models/$model.ddpm" --data moons --minutes "$MIN" --steps 100000000 --batch 256 --threads 2 \
        --seed "$seed" --out "$run" > "$run.train.log" 2>&1
      trained="$trained $model.s$seed"
    fi
    done_steps+=("$(grep -oE 'after [0-9]+ steps' "$run.train.log" | grep -oE '[0-9]+' | tail -1)")
    "$T/ddpm-sample" "$run" --sampler "$sampler" --steps "$steps" -n 4000 --threads 2 --quiet \
      --out "$run.$sampler.npy" > /dev/null 2>&1
    line=$("$T/ddpm-eval" "$run" --quality --samples "$run.$sampler.npy" -n 4000 --threads 2 2>&1 |
           grep 'sliced Wasserstein')
    sws+=("$(sed -E 's/.*distance ([0-9.]+) .*/\1/' <<< "$line")")
    floor=$(sed -E 's/.*floor ([0-9.]+).*/\1/' <<< "$line")
  done
  steps_col=$(IFS=/; echo "${done_steps[*]}")
  if (( ${#seeds[@]} > 1 )); then
    sw=$(printf '%s\n' "${sws[@]}" | awk '{s += $1; v = v (NR > 1 ? ", " : "") $1} END {printf "%.5f [%s]", s / NR, v}')
  else
    sw=${sws[0]}
  fi
  echo "| \`$model\` | $steps_col | \`$sampler\` | $steps | $evals | $sw | $floor |"
done

[[ -z "${MODELS:-}" || " $MODELS " == *" moons_learned_var "* ]] || exit 0
echo
echo "| moons_learned_var: the bound with | nats/dim | L_0 |"
echo "| --- | ---: | ---: |"
for v in learned fixed; do
  line=$("$T/ddpm-eval" "$OUT/moons_learned_var.s${seeds[0]}" --bound --variance "$v" -n 1000 --threads 2 -q 2>&1 | grep 'nats/dim')
  echo "| $v variance | $(sed -E 's/nats\/dim ([0-9.-]+ ± [0-9.]+).*/\1/' <<< "$line") | $(sed -E 's/.*L_0 ([0-9.e-]+);.*/\1/' <<< "$line") |"
done
