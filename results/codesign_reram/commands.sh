#!/bin/sh
# The search, at 210172c on the 2-core CPU with an empty runs/cache (its 8 models trained inside it; the work tree's
# uncommitted changes were a comment in wxy_hw/studies/spine.py and scripts/reproduce_quant_table.sh, neither on
# this path): 13 min 53 s wall (/usr/bin/time), 1,599 s of user time.
python experiments/codesign.py --device reram --out runs/codesign/reram_onechip
# Then the front's four most accurate points and the reference retrained from scratch with seeds 1-3 and measured
# on test images and fresh chips (6 min 20 s):
python experiments/codesign.py --device reram --out runs/codesign/reram_onechip --resume --confirm-seeds 1 2 3 --confirm-points 4
