#!/bin/sh
# the command that made this run (from its manifest)
python experiments/codesign.py --device subthreshold_cmos --out runs/codesign/subthreshold_cmos_default
