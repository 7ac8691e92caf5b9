#!/usr/bin/env bash
# Reproduces docs/results.md's "accuracy at nominal noise" table (issue 3): baseline, self_distillation,
# hwa and self_distillation+hwa, each hwa model trained with its target device's noise, evaluated
# on 10 chips of reram, subthreshold_cmos and pcm at t = 1 day. Same budget as the cached default
# models of experiments/noise_sweep.py then (ResNet-18 width 0.25, stem stride 1, 20,000 Fashion-MNIST images,
# 4 epochs), pinned here: today's defaults are the zoo's (stem stride 2, 15 epochs on every image).
# About 15 minutes on a 2-core CPU (plus the default models' training if they are not cached yet).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BUDGET=(--arch resnet18 --width 0.25 --stem-stride 1 --subset 20000 --epochs 4 --dataset fashion_mnist --quiet)
CACHE=runs/cache/fashion_mnist_resnet18_w0.25_e4_n20000_s0
for m in baseline self_distillation; do
  [ -f "$CACHE/${m}_stem1/best.pt" ] || $PY -c "from wxy_hw.studies import cached_checkpoint
cached_checkpoint('$m', epochs=4, subset=20000, stem_stride=1)"
done
for dev in reram subthreshold_cmos pcm; do
  for m in hwa self_distillation+hwa; do
    out="runs/hwa/${dev}/${m}"
    [ -f "$out/results.json" ] || $PY experiments/train.py --method "$m" --method-arg device=$dev "${BUDGET[@]}" \
        --out "$out" --overwrite
  done
  $PY experiments/noise_sweep.py --device $dev --checkpoints "$CACHE/baseline_stem1/best.pt" \
      "$CACHE/self_distillation_stem1/best.pt" "runs/hwa/${dev}/hwa/best.pt" "runs/hwa/${dev}/self_distillation+hwa/best.pt" \
      --scales 1 --times 86400 --t-inference 86400 --chips 10 --no-flat --quiet \
      --out "runs/hwa_table/${dev}" --overwrite
done
