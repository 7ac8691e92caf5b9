#!/bin/sh
# the command that made this run (from its manifest)
python experiments/codesign.py --device reram --methods baseline --width 0.25 --rows 128 --adc-bits 6 --ranging fixed --bn-recalibrate 0 64 --bits-per-cell 0 1 2 4 --trials 8 --workers 2 --out runs/codesign/reram_bits
