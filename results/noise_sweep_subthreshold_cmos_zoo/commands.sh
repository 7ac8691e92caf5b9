#!/bin/sh
# the command that made this run (from its manifest)
python experiments/noise_sweep.py --device subthreshold_cmos --out runs/ns3_subthreshold_cmos
