#!/bin/sh
# the command that made this run (from its manifest)
python experiments/codesign.py --device pcm --out runs/codesign/pcm_default
# Then, at f7917c3, every front point and the reference retrained from scratch with seeds 1-3, measured on test
# images and fresh chips (9 min 27 s):
python experiments/codesign.py --device pcm --out runs/codesign/pcm_default --resume --confirm-seeds 1 2 3 --confirm-points 6 --workers 2
