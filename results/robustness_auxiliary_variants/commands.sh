#!/bin/sh
# At 99c881a, after runs/robustness/default (scripts/reproduce_robustness_tables.sh): the variant trained at stem
# stride 2 before, at 4927e07 (84 s; the same training code), this study 157 s. One training seed (0).
python experiments/train.py --method auxiliary --method-arg merge_bn=true --arch resnet18 --width 0.25 --stem-stride 2 --subset 20000 --epochs 4 --dataset fashion_mnist --out runs/robustness/auxiliary_merge_bn_stem2 --overwrite --quiet
python experiments/corruption_robustness.py --checkpoints runs/cache/fashion_mnist_resnet18_w0.25_e4_n20000_s0/baseline/best.pt runs/cache/fashion_mnist_resnet18_w0.25_e4_n20000_s0/auxiliary/best.pt runs/robustness/auxiliary_merge_bn_stem2/best.pt --out runs/robustness/auxiliary_variants --overwrite --quiet
