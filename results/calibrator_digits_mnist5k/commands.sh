#!/bin/sh
# the command that made this run (from its manifest)
python experiments/calibrator_adapt.py --source digits --target mnist5k --out runs/calibrator/digits_mnist5k --overwrite --quiet
