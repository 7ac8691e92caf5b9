#!/bin/sh
# the command that made this run (from its manifest)
python experiments/corruption_robustness.py --checkpoints runs/cache/fashion_mnist_resnet18_w0.25_e4_n20000_s0/baseline/best.pt runs/cache/fashion_mnist_resnet18_w0.25_e4_n20000_s0/auxiliary/best.pt runs/robustness/auxiliary_merge_bn/best.pt --out runs/robustness/auxiliary_variants --overwrite --quiet
