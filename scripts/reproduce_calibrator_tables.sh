#!/usr/bin/env bash
# Reproduces docs/results.md's Calibrator tables (issue 7): the domain pairs mnist5k → digits,
# digits → mnist5k and fashion_mnist → fashion_mnist-C (Gaussian noise, severity 5), and
# chip-instance calibration on reram and subthreshold CMOS for 5 chip seeds. Classifiers are the
# cached default baselines of each source (ResNet-18 width 0.25, 4 epochs, validation-selected).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY experiments/calibrator_adapt.py --source mnist5k --target digits --train-epochs 4 --train-subset 20000 --out runs/calibrator/mnist5k_digits --overwrite --quiet
$PY experiments/calibrator_adapt.py --source digits --target mnist5k --train-epochs 4 --train-subset 20000 --out runs/calibrator/digits_mnist5k --overwrite --quiet
$PY experiments/calibrator_adapt.py --source fashion_mnist --target fashion_mnist-C --corruption gaussian_noise \
    --severity 5 --device subthreshold_cmos --train-epochs 4 --train-subset 20000 --out runs/calibrator/fmnist_c_subthreshold --overwrite --quiet
$PY experiments/calibrator_adapt.py --source fashion_mnist --target none --device reram \
    --train-epochs 4 --train-subset 20000 --out runs/calibrator/reram --overwrite --quiet
