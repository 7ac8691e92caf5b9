#!/bin/sh
# the command that made this run (from its manifest)
python experiments/codesign.py --device reram --methods baseline --width 0.25 --rows 128 --adc-bits 6 --ranging fixed --bn-recalibrate 0 64 --bits-per-cell 0 1 2 4 --trials 8 --workers 2 --out runs/codesign/reram_bits_onechip
# Run at ee57f4f with the one-chip change of b099be1 in the work tree (the default chip priced as the device's own
# cells); 72 s with the baseline cached. The accuracies equal those of the run before the change; the energies of
# the device-cell designs and of the reference are the new price.
