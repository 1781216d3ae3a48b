#!/usr/bin/env bash
# Fashion-MNIST at one training budget: the discrete DDPM U-Net (models/fashion_unet.ddpm)
# against EDM and rectified flow on the same U-Net (models/fashion_edm.ddpm,
# models/fashion_flow.ddpm). Each trains MINUTES (default 20) at 2 threads, batch 64,
# EMA 0.995 (the README's recipe), one after another; then ddpm-eval --quality -n 1000
# measures each at about 50 network evaluations (DDIM 50 steps; EDM Heun 25 steps = 49;
# flow Euler 50 steps) and ddpm-sample writes a 10x10 grid. Runs go to OUT_DIR (default
# runs/fashion_continuous) and are kept. Prints a Markdown table; nothing asserts on it.
# STEPS=N trains N steps instead of MINUTES (an equal-work comparison on a VM whose
# speed drifts); MODELS="fashion_edm fashion_flow" runs only those. MODELS=fashion_learned_var
# trains the learned-variance U-Net (models/fashion_learned_var.ddpm) once and measures its
# three ancestral samplers at 50 steps: learned variance, beta_tilde and beta.
#
#   bench/fashion_continuous.sh [BUILD_DIR] [MINUTES] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
MIN=${2:-20}
OUT=${3:-runs/fashion_continuous}
T=$B/tools
mkdir -p "$OUT"

echo "$(date -u '+%Y-%m-%d %H:%M UTC'), load $(uptime | sed 's/.*load average: //') (1, 5, 15 min),"\
     "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- models || echo " with models/ changed")"
echo
budget=$([ -n "${STEPS:-}" ] && echo "--steps $STEPS" || echo "--minutes $MIN --steps 100000000")
echo "| model | training steps ($budget) | minutes | sampler | steps | net evaluations | FID vs train | FID vs test | precision | recall | load after |"
echo "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
trained=""
for c in "fashion_unet ddim 50 50" "fashion_edm heun 25 49" "fashion_flow euler 50 50" \
         "fashion_learned_var learned 50 50" "fashion_learned_var fixed_small 50 50" "fashion_learned_var fixed_large 50 50"; do
  read -r model sampler steps evals <<< "$c"
  [[ " ${MODELS:-fashion_unet fashion_edm fashion_flow} " == *" $model "* ]] || continue
  run=$OUT/$model
  if [[ " $trained " != *" $model "* ]]; then
    rm -rf "$run"
    # shellcheck disable=SC2086
    "$T/ddpm-train" "models/$model.ddpm" --data fashion-mnist $budget --batch 64 \
      --threads 2 --ema-decay 0.995 --seed 1 --out "$run" > "$OUT/$model.train.log" 2>&1
    trained="$trained $model"
  fi
  done_steps=$(grep -oE '(after|trained) [0-9]+ steps' "$OUT/$model.train.log" | grep -oE '[0-9]+' | tail -1)
  minutes=$(grep -oE 'steps in [0-9.]+ s' "$OUT/$model.train.log" | grep -oE '[0-9.]+' | tail -1 |
            awk '{printf "%.1f", $1 / 60}')
  load=$(uptime | sed 's/.*load average: //')
  "$T/ddpm-eval" "$run" --quality -n 1000 --sampler "$sampler" --steps "$steps" --threads 2 -q \
    > "$OUT/$model.$sampler.eval.log" 2>&1
  "$T/ddpm-sample" "$run" --sampler "$sampler" --steps "$steps" -n 100 --threads 2 --quiet \
    --out "$OUT/$model.$sampler.grid.npy" --png "$OUT/$model.$sampler.grid.png" > /dev/null 2>&1
  fid_train=$(grep -oE 'FID [0-9.]+ vs the training' "$OUT/$model.$sampler.eval.log" | grep -oE '[0-9.]+' | head -1 || true)
  fid_test=$(grep -oE 'FID [0-9.]+ vs the test' "$OUT/$model.$sampler.eval.log" | grep -oE '[0-9.]+' | head -1 || true)
  prec=$(grep -oE 'precision [0-9.]+' "$OUT/$model.$sampler.eval.log" | grep -oE '[0-9.]+' | head -1 || true)
  rec=$(grep -oE 'recall [0-9.]+' "$OUT/$model.$sampler.eval.log" | grep -oE '[0-9.]+' | head -1 || true)
  echo "| \`$model\` | $done_steps | $minutes | \`$sampler\` | $steps | $evals | $fid_train | $fid_test | $prec | $rec | $load |"
done
