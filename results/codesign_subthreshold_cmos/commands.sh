#!/bin/sh
# the command that made this run (from its manifest)
python experiments/codesign.py --device subthreshold_cmos --out runs/codesign/subthreshold_cmos_default
# Then, at f7917c3, every front point and the reference retrained from scratch with seeds 1-3, measured on test
# images and fresh chips (20 min 26 s, the test suite of a fresh clone beside it for 14 min):
python experiments/codesign.py --device subthreshold_cmos --out runs/codesign/subthreshold_cmos_default --resume --confirm-seeds 1 2 3 --confirm-points 7 --workers 2
