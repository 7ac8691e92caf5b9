"""Train several methods on the same budget and seeds; print the seed's Table 1 / 2 / 3 with intervals.

    python experiments/compare_methods.py --methods baseline dsn self_distillation --seeds 0 1 2
    python experiments/compare_methods.py --methods baseline kd fitnet at dml self_distillation \
        --teacher-arch resnet34 --seeds 0 1 2          # the seed's Table 2 columns

Each method trains into <out>/<method>/s<seed>/ (a finished run is reused, an interrupted one
resumed, a damaged one kept as s<seed>.damaged and trained again); teachers (for kd, fitnet, at)
into <out>/teacher/s<seed>/ unless --teacher is given. Cells are mean ± 95 % t interval over
seeds; the last column is the paired difference of the final exit to the baseline with its
p-value. Tidy per-seed rows go to <out>/comparison.csv, the table to <out>/comparison.md, the
settings to <out>/config.toml. After Ctrl-C, re-run the same command: finished parts are reused.
--workers N trains N runs at a time as Ray tasks on this machine (cores / N torch threads each;
--ray-address: on a cluster, one thread each, --out on a filesystem every node sees); each run is
trained as it would be alone, and a run a worker left unfinished is continued by the next call.

A run whose settings are exactly those of a shipped zoo model (the zoo's recipe: --epochs 15
--stem-stride 2, seeds 0-4) is that model, evaluated on test and validation, not retrained; its
results.json says which (--retrain trains it). --reuse DIR does the same with the runs of an earlier
comparison folder (DIR/<method>/s<seed>, DIR/teacher/s<seed>). Hardware-aware models are fine-tuned from digital ones:

    python experiments/compare_methods.py --methods hwa self_distillation+hwa --init-from DIGITAL_DIR \
        --method-arg device=pcm --method-arg self_distillation+hwa.noise_scale=0.5 --epochs 5 --lr 0.01
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from ..studies.compare_methods import CompareConfig, compare_methods_run
from ..studies.train import RERUN
from ..train import TrainingInterrupted
from . import (seed_int, add_data_args, add_parallel_args, add_train_args, config_of, defaults, fail, new_parser, parse, run_guard,
               width_multiplier)


def build_parser() -> argparse.ArgumentParser:
    """The compare_methods command line."""
    d = defaults(CompareConfig)
    parser = new_parser(__doc__, "compare_methods")
    add_data_args(parser)
    add_train_args(parser)
    parser.add_argument("--methods", nargs="+", default=d["methods"], help="methods to compare")
    parser.add_argument("--seeds", type=seed_int, nargs="+", default=None,
                        help="training seeds; every method trains once per seed (None: --seed alone)")
    parser.add_argument("--teacher-arch", default=None,
                        help="train a baseline teacher of this architecture per seed for kd / fitnet / at")
    parser.add_argument("--teacher-width", type=width_multiplier, default=None, help="its width (None: --width)")
    parser.add_argument("--init-from", default=None, metavar="DIR",
                        help="fine-tune each method from its digital counterpart's model of the same seed in this "
                             "comparison folder (DIR/<method without +hwa>/s<seed>/best.pt; hwa: DIR/baseline), as "
                             "a hardware-aware model is made (with --epochs 5 --lr 0.01)")
    parser.add_argument("--retrain", action="store_true",
                        help="train every model here, even one the shipped zoo holds with exactly these settings "
                             "(by default such a model is evaluated and reused, not retrained)")
    parser.add_argument("--reuse", nargs="+", default=None, metavar="DIR",
                        help="earlier comparison folders: a run there trained with exactly a run's settings (its "
                             "start and teacher the same files by content) is adopted into --out, evaluated, not "
                             "retrained; its manifest names the run it came from")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for all runs (None: runs/compare/<dataset>_<arch>_w<width>)")
    add_parallel_args(parser, d["workers"], d["ray_address"])  # runs side by side (a cluster: --out on shared disk)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Compare methods from the command line; the exit status."""
    args = parse(build_parser(), argv, CompareConfig)
    args.resume = True  # <out> is meant to be re-run: finished methods are reused, interrupted ones resumed
    try:
        config = config_of(CompareConfig, args)
        with run_guard(args, kind="compare_methods"):
            result = compare_methods_run(config, out=args.out, progress=args.progress)
    except KeyboardInterrupt as exc:  # there is no --resume here: re-running the command continues
        if not isinstance(exc, TrainingInterrupted):  # a training run's message already says so
            exc.args = (f"{str(exc) or 'compare_methods stopped'}; {RERUN}",)
        return fail(exc)
    except Exception as exc:
        return fail(exc)
    print(result.table)
    return 0
