#!/usr/bin/env bash
# Reproduces docs/results.md's quantization table (issue 5): PTQ at 8/6/4/3/2-bit weights (8-bit
# activations) for the cached default baseline and self_distillation models, plus QAT at 4 bits
# (same training budget), digital and on 3 reram chips at 1 day. About 8 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BUDGET=(--arch resnet18 --width 0.25 --subset 20000 --epochs 4 --dataset fashion_mnist --quiet)
for m in qat self_distillation+qat; do
  out="runs/qat/w4/${m}"
  [ -f "$out/results.json" ] || $PY experiments/train.py --method "$m" --method-arg weight_bits=4 "${BUDGET[@]}" \
      --out "$out" --overwrite
done
$PY experiments/quant_sweep.py --device reram --weight-bits 8 6 4 3 2 --act-bits 8 --chips 3 --train-epochs 4 --train-subset 20000 \
    --qat-checkpoints runs/qat/w4/qat/best.pt "runs/qat/w4/self_distillation+qat/best.pt" --quiet \
    --out runs/quant_table/reram --overwrite
