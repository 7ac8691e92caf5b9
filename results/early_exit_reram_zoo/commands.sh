#!/bin/sh
# At 13cd7b3 on the 2-core CPU, nothing else running: 9 min 58 s in all. The dsn and scan models of the zoo's recipe
# (15 epochs on all training images, seed 0; not in the zoo) trained into runs/cache inside it (4.4 and 5.1 min);
# baseline and self_distillation are the zoo's seed-0 models; the study itself took the last ~30 s.
python experiments/early_exit_energy.py --device reram --out runs/early_exit/reram_zoo
