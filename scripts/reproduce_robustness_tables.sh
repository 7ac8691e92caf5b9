#!/usr/bin/env bash
# Reproduces docs/results.md's robustness tables (issue 6): the corruption table (Fashion-MNIST-C as
# generated here), mCE, adversarial accuracy and the hardware table for the cached default models
# (baseline, augment, ada, auxiliary, adv: ResNet-18 width 0.25 on today's defaults, stem stride 2, crop and
# flip, 20,000 Fashion-MNIST images, 4 epochs, validation-selected; hwa fine-tuned from that baseline), then
# the auxiliary variant with merged BN in period 2 (the same shape: stem stride 2) against the same baseline.
# About 17 minutes on a 2-core CPU beside two trainings when no model is cached yet. Archived: results/robustness_default, results/robustness_auxiliary_variants.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CACHE=runs/cache/fashion_mnist_resnet18_w0.25_e4_n20000_s0
$PY experiments/corruption_robustness.py --train-epochs 4 --train-subset 20000 --out runs/robustness/default --overwrite --quiet
variant=runs/robustness/auxiliary_merge_bn_stem2  # not the stride-1 variant an earlier version of this script trained
[ -f "$variant/results.json" ] || $PY experiments/train.py --method auxiliary --method-arg merge_bn=true \
    --arch resnet18 --width 0.25 --stem-stride 2 --subset 20000 --epochs 4 --dataset fashion_mnist \
    --out "$variant" --overwrite --quiet
$PY experiments/corruption_robustness.py --checkpoints "$CACHE/baseline/best.pt" "$CACHE/auxiliary/best.pt" \
    "$variant/best.pt" --out runs/robustness/auxiliary_variants --overwrite --quiet
