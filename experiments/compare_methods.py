"""Train several methods on the same budget and print the seed's Table 1 / Table 3.

    python experiments/compare_methods.py --methods baseline dsn self_distillation \
        --arch resnet18 --width 0.25 --dataset fashion_mnist --epochs 10

Each method trains into <out>/<method>/ (a finished run is reused, an interrupted one resumed);
the combined table goes to <out>/comparison.csv and <out>/comparison.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wxy_hw.cli import add_data_args, add_train_args, fail, run_guard, train_kwargs
from wxy_hw.experiment import compare_methods


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(parser)
    add_train_args(parser)
    parser.add_argument("--methods", nargs="+", default=["baseline", "dsn", "self_distillation"])
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for all runs (default: runs/compare/<dataset>_<arch>_w<width>_s<seed>)")
    args = parser.parse_args(argv)
    args.resume = True  # <out> is meant to be re-run: finished methods are reused, interrupted ones resumed
    try:
        with run_guard(args):
            table = compare_methods(methods=args.methods, out=args.out, **train_kwargs(args))
    except (Exception, KeyboardInterrupt) as exc:
        return fail(exc)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
