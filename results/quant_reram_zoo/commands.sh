#!/bin/sh
# scripts/reproduce_quant_table.sh, 6 min 57 s on the 2-core CPU with nothing else running: the baseline's QAT
# fine-tune ran at 5e38c30, the rest at 218eb7b (a docs-only commit between). First the two QAT fine-tunes from the
# zoo's seed-0 float models (their config.toml, metrics.csv and results.json are in qat/), then the sweep:
python experiments/quant_sweep.py --device reram --weight-bits 8 6 4 3 2 --act-bits 8 --chips 3 --qat-checkpoints runs/qat/zoo_w4/qat/best.pt runs/qat/zoo_w4/self_distillation+qat/best.pt --quiet --out runs/quant_table/reram_zoo --overwrite
