#!/bin/sh
# The search: a fresh clone of 6e88837 with an empty runs/ (no cached model), on the 2-core CPU:
# 19 min 3 s wall (/usr/bin/time), its 8 models trained inside.
python experiments/codesign.py --device reram
# Then, at f7917c3 (engine unchanged on this path), the front's four points and the reference retrained from
# scratch with seeds 1-3 and measured on test images and fresh chips (8 min 26 s):
python experiments/codesign.py --device reram --out runs/codesign/reram_20261202-164517 --resume --confirm-seeds 1 2 3 --confirm-points 4
