#!/usr/bin/env bash
# Reproduces docs/results.md's Calibrator tables (issue 7): the domain pairs mnist5k → digits,
# digits → mnist5k and fashion_mnist → fashion_mnist-C (Gaussian noise, severity 5), and
# chip-instance calibration on reram and subthreshold CMOS for 5 chip seeds. Classifiers are the
# default baselines of each source (the zoo's recipe: ResNet-18 width 0.25, stem stride 2, 15 epochs on every
# training image, validation-selected; Fashion-MNIST's seed 0 is the zoo's, the digit sets' train once).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY experiments/calibrator_adapt.py --source mnist5k --target digits --out runs/calibrator/mnist5k_digits --overwrite --quiet
$PY experiments/calibrator_adapt.py --source digits --target mnist5k --out runs/calibrator/digits_mnist5k --overwrite --quiet
$PY experiments/calibrator_adapt.py --source fashion_mnist --target fashion_mnist-C --corruption gaussian_noise \
    --severity 5 --device subthreshold_cmos --out runs/calibrator/fmnist_c_subthreshold --overwrite --quiet
$PY experiments/calibrator_adapt.py --source fashion_mnist --target none --device reram \
    --out runs/calibrator/reram --overwrite --quiet
