"""Train one model with one method.

    python experiments/train.py --method self_distillation --arch resnet18 --dataset fashion_mnist
    torchrun --nproc-per-node 2 experiments/train.py --method self_distillation   # data-parallel (DDP)

Writes a run directory (manifest.json, metrics.csv, best.pt, last.pt, results.json) and prints
the seed's Table-1 row for the validation-selected checkpoint, evaluated once on test.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wxy_hw.cli import add_data_args, add_train_args, fail, run_guard, train_kwargs
from wxy_hw.experiment import train_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(parser)
    add_train_args(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory (default: runs/train/<dataset>_<arch>_w<width>_<method>_s<seed>)")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue from <out>/last.pt (a lower --lr is accepted, e.g. after divergence)")
    again.add_argument("--overwrite", action="store_true", help="replace the run in --out (its outputs are cleared)")
    args = parser.parse_args(argv)
    try:
        with run_guard(args):
            summary = train_run(method=args.method, out=args.out, resume=args.resume, overwrite=args.overwrite,
                                **train_kwargs(args))
    except (Exception, KeyboardInterrupt) as exc:  # one clear line, no traceback, for every user-facing error
        return fail(exc)
    if summary.get("rank"):  # torchrun: rank 0 reports for all
        return 0
    print(summary["table"])
    print(f"\nrun directory: {summary['run_dir']}")
    print(json.dumps({k: summary[k] for k in ("best_epoch", "best_val", "wall_time_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
