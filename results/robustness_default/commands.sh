#!/bin/sh
# the command that made this run (from its manifest)
python experiments/corruption_robustness.py --train-epochs 4 --train-subset 20000 --out runs/robustness/default --overwrite --quiet
