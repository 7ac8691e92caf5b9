#!/bin/sh
# the command that made this run (from its manifest)
python experiments/noise_sweep.py --device reram --out runs/ns4_reram
