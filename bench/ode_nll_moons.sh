#!/usr/bin/env bash
# The likelihood by the probability-flow ODE (ddpm-eval --nll ode) of the moons models:
# the discrete DDPM (models/moons.ddpm, through its schedule's continuous-time limit)
# next to its variational bound, and the continuous-time VP-SDE, EDM and rectified flow.
# Each model trains for MINUTES (default 0.5) at 2 threads and batch 256, one after
# another; then each is evaluated on the same 1000 held-out points with the exact
# divergence and with Hutchinson's estimator (RK45, rtol = atol = 1e-5), and the DDPM
# also by ddpm-eval --bound (full sum). Prints a Markdown table in nats/dim; nothing
# asserts on it. MODELS="moons_edm" runs only those models.
#
#   bench/ode_nll_moons.sh [BUILD_DIR] [MINUTES]
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
echo "| model | training steps in $MIN min | measure | nats/dim | net evaluations per batch of 100 | seconds |"
echo "| --- | ---: | --- | ---: | ---: | ---: |"
field() { sed -E "s|.*$1 ([0-9.e+-]+).*|\1|" <<< "$2"; }
for model in moons moons_vp moons_edm moons_flow; do
  [[ -z "${MODELS:-}" || " $MODELS " == *" $model "* ]] || continue
  run=$OUT/$model
  "$T/ddpm-train" "models/$model.ddpm" --data moons --minutes "$MIN" --steps 100000000 --batch 256 --threads 2 \
    --seed 1 --out "$run" > "$OUT/$model.train.log" 2>&1
  steps=$(grep -oE 'after [0-9]+ steps' "$OUT/$model.train.log" | grep -oE '[0-9]+' | tail -1)
  if [[ $model == moons ]]; then
    line=$("$T/ddpm-eval" "$run" --bound -n 1000 --threads 2 --quiet 2>&1 | grep '^nats/dim')
    echo "| \`$model\` | $steps | variational bound (T = 1000, full sum) | $(field 'nats/dim' "$line") ± $(sed -E 's/.*± ([0-9.]+).*/\1/' <<< "$line") | 1000 | |"
  fi
  for trace in exact hutchinson; do
    line=$("$T/ddpm-eval" "$run" --nll ode --trace $trace -n 1000 --threads 2 --quiet 2>&1 | grep '^ode nats/dim')
    echo "| \`$model\` | $steps | ODE, $trace trace | $(field 'nats/dim' "$line") ± $(sed -E 's/.*± ([0-9.]+).*/\1/' <<< "$line") |"\
         "$(sed -E 's/.*batch of 100: ([0-9]+) net.*/\1/' <<< "$line") | $(sed -E 's/.* ([0-9.]+) s\)$/\1/' <<< "$line") |"
  done
done
