#!/bin/sh
# the command that made this run (from its manifest)
python experiments/noise_sweep.py --device pcm --out runs/ns3_pcm
