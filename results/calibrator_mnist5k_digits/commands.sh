#!/bin/sh
# the command that made this run (from its manifest)
python experiments/calibrator_adapt.py --source mnist5k --target digits --out runs/calibrator/mnist5k_digits --overwrite --quiet
