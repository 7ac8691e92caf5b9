#!/bin/sh
# the command that made this run (from its manifest)
python experiments/calibrator_adapt.py --source fashion_mnist --target none --device reram --out runs/calibrator/reram --overwrite --quiet
