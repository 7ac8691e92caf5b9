#!/bin/sh
# every command behind report.md, in order; their paths are relative to this folder,
# so the script runs here (wxy-hw <study> is python experiments/<study>.py of the repository)
set -e
cd "$(dirname "$0")"
wxy-hw compare_methods --methods baseline self_distillation scan augment ada --seeds 0 1 2 --dataset fashion_mnist --arch resnet18 --width 0.25 --epochs 15 --stem-stride 2 --torch-device auto --out methods --quiet
wxy-hw corruption_robustness --checkpoints methods/baseline/s0/best.pt methods/augment/s0/best.pt methods/ada/s0/best.pt --corruptions gaussian_noise gaussian_blur shot_noise motion_blur --severities 1 3 5 --samples 2000 --adv-samples 0 --pgd-steps 10 --chips 0 --seed 0 --torch-device auto --dataset fashion_mnist --out robustness/s0 --quiet
wxy-hw corruption_robustness --checkpoints methods/baseline/s1/best.pt methods/augment/s1/best.pt methods/ada/s1/best.pt --corruptions gaussian_noise gaussian_blur shot_noise motion_blur --severities 1 3 5 --samples 2000 --adv-samples 0 --pgd-steps 10 --chips 0 --seed 1 --torch-device auto --dataset fashion_mnist --out robustness/s1 --quiet
wxy-hw corruption_robustness --checkpoints methods/baseline/s2/best.pt methods/augment/s2/best.pt methods/ada/s2/best.pt --corruptions gaussian_noise gaussian_blur shot_noise motion_blur --severities 1 3 5 --samples 2000 --adv-samples 0 --pgd-steps 10 --chips 0 --seed 2 --torch-device auto --dataset fashion_mnist --out robustness/s2 --quiet
