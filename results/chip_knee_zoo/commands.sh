#!/bin/sh
# At this commit on the 2-core CPU beside two trainings: 22 s. The model is the zoo's self_distillation seed 0
# (the default); 500 test images and 2 chips per configuration, one training seed.
python experiments/chip_study.py --devices subthreshold_cmos digital_int8 --rows 256 --adc-bits 3 4 6 8 --bits-per-cell 4 --ranging fixed per_sample --chips 2 --samples 500 --out runs/chip_study/knee_zoo
