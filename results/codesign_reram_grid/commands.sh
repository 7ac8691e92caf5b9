#!/bin/sh
# The search and the grid at equal compute, with the most accurate front point of each retrained (30 min 25 s,
# --workers 2, at f7917c3, the default search's models already in runs/cache):
python experiments/codesign.py --device reram --grid baseline self_distillation hwa self_distillation+hwa --trainings 4 --trials 36 --confirm-seeds 1 2 3 --confirm-points 1 --workers 2 --out runs/codesign/reram_grid
# Then the three most accurate front points of each side retrained (7 min 14 s):
python experiments/codesign.py --device reram --grid baseline self_distillation hwa self_distillation+hwa --trainings 4 --trials 36 --confirm-seeds 1 2 3 --confirm-points 3 --workers 2 --out runs/codesign/reram_grid --resume
