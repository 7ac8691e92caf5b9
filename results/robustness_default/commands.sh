#!/bin/sh
# At 99c881a on the 2-core CPU beside two trainings (nice 10): scripts/reproduce_robustness_tables.sh ran both
# studies in 12 min 40 s, baseline and auxiliary already cached (trained 161 s before at e1c80ef, whose code is this commit's
# but for the manifests' checkpoint_records; its uncommitted changes were docs only);
# augment, ada, adv and hwa@reram_ft4 trained inside this one. One training seed (0).
python experiments/corruption_robustness.py --train-epochs 4 --train-subset 20000 --out runs/robustness/default --overwrite --quiet
