#!/bin/sh
# the search against today's grid at equal compute (4 models each), with the front's best points and the reference
# retrained from scratch with seeds 1-3; started with one worker, stopped, and resumed (--resume) with --workers 2
python experiments/codesign.py --device reram --out runs/codesign/reram_compare --grid baseline self_distillation hwa self_distillation+hwa --trainings 4 --trials 32 --rows 128 256 --adc-bits 4 8 --bits-per-cell 1 2 --confirm-seeds 1 2 3 --confirm-points 1
python experiments/codesign.py --device reram --out runs/codesign/reram_compare --grid baseline self_distillation hwa self_distillation+hwa --trainings 4 --trials 32 --rows 128 256 --adc-bits 4 8 --bits-per-cell 1 2 --confirm-seeds 1 2 3 --confirm-points 1 --workers 2 --resume
