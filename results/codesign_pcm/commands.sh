#!/bin/sh
# the command that made this run (from its manifest)
python experiments/codesign.py --device pcm --out runs/codesign/pcm_default
