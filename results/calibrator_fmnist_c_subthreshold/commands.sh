#!/bin/sh
# the command that made this run (from its manifest)
python experiments/calibrator_adapt.py --source fashion_mnist --target fashion_mnist-C --corruption gaussian_noise --severity 5 --device subthreshold_cmos --out runs/calibrator/fmnist_c_subthreshold --overwrite --quiet
