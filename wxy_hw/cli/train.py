"""Train one model with one method.

    python experiments/train.py --method self_distillation --arch resnet18 --dataset fashion_mnist
    torchrun --nproc-per-node 2 experiments/train.py --method self_distillation   # data-parallel (DDP)
    (or: wxy-hw train --method self_distillation ...)

Writes a run directory (config.toml, manifest.json, metrics.csv, best.pt, last.pt, results.json) and
prints the seed's Table-1 row for the validation-selected checkpoint, evaluated once on test.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from ..studies.train import TrainRunConfig, train_run
from . import add_data_args, add_train_args, config_of, fail, new_parser, parse, run_guard


def build_parser() -> argparse.ArgumentParser:
    """The train command line."""
    parser = new_parser(__doc__, "train")
    add_data_args(parser)
    add_train_args(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory (None: runs/train/<dataset>_<arch>_w<width>_<method>_s<seed>)")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue from <out>/last.pt (a lower --lr is accepted, e.g. after divergence)")
    again.add_argument("--overwrite", action="store_true", help="replace the run in --out (its outputs are cleared)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Train from the command line; the exit status."""
    args = parse(build_parser(), argv, TrainRunConfig)
    try:
        config = config_of(TrainRunConfig, args)
        with run_guard(args, kind="train"):
            summary = train_run(config, out=args.out, resume=args.resume, overwrite=args.overwrite,
                                progress=args.progress)
    except (Exception, KeyboardInterrupt) as exc:  # one clear line, no traceback, for every user-facing error
        return fail(exc)
    if summary.details.get("rank"):  # torchrun: rank 0 reports for all
        return 0
    print(summary["table"])
    print(f"\nrun directory: {summary['run_dir']}")
    print(json.dumps({k: summary[k] for k in ("best_epoch", "best_val", "wall_time_s")}))
    return 0
