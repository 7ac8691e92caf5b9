#!/usr/bin/env bash
# Reproduces docs/results.md's quantization table (issue 5) on the zoo's converged seed-0 models: PTQ at
# 8/6/4/3/2-bit weights (8-bit activations) of baseline and self_distillation, plus QAT at 4 bits fine-tuned from
# the same float models (5 epochs at lr 0.01, as the hardware-aware models are: spine.HWA_FINETUNE), digital and on
# 3 reram chips at 1 day. About 7 minutes on a 2-core CPU, most of it the two QAT fine-tunes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ZOO=zoo/fashion_mnist_resnet18_w0.25_e15_nall_s0
for float in baseline self_distillation; do
  qat=$([ "$float" = baseline ] && echo qat || echo self_distillation+qat)
  out="runs/qat/zoo_w4/${qat}"
  [ -f "$out/results.json" ] || $PY experiments/train.py --config "${ZOO}__${float}.config.toml" --method "$qat" \
      --method-arg weight_bits=4 --init "${ZOO}__${float}.pt" --epochs 5 --lr 0.01 --quiet --out "$out" --overwrite
done
$PY experiments/quant_sweep.py --device reram --weight-bits 8 6 4 3 2 --act-bits 8 --chips 3 \
    --qat-checkpoints runs/qat/zoo_w4/qat/best.pt "runs/qat/zoo_w4/self_distillation+qat/best.pt" --quiet \
    --out runs/quant_table/reram_zoo --overwrite
