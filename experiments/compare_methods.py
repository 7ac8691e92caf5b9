"""Train several methods on the same budget and seeds; print the seed's Table 1 / 2 / 3 with intervals.

    python experiments/compare_methods.py --methods baseline dsn self_distillation --seeds 0 1 2
    python experiments/compare_methods.py --methods baseline kd fitnet at dml self_distillation \
        --teacher-arch resnet34 --seeds 0 1 2          # the seed's Table 2 columns

Each method trains into <out>/<method>/s<seed>/ (a finished run is reused, an interrupted one
resumed); teachers (for kd, fitnet, at) into <out>/teacher/s<seed>/ unless --teacher is given.
Cells are mean ± 95 % t interval over seeds; the last column is the paired difference of the
final exit to the baseline with its p-value. Tidy per-seed rows go to <out>/comparison.csv, the
table to <out>/comparison.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wxy_hw.cli import add_data_args, add_train_args, fail, positive_float, run_guard, train_kwargs
from wxy_hw.experiment import compare_methods


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(parser)
    add_train_args(parser)
    parser.add_argument("--methods", nargs="+", default=["baseline", "dsn", "self_distillation"],
                        help="methods to compare (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="training seeds; every method trains once per seed (default: --seed alone)")
    parser.add_argument("--teacher-arch", default=None,
                        help="train a baseline teacher of this architecture per seed for kd / fitnet / at")
    parser.add_argument("--teacher-width", type=positive_float, default=None, help="its width (default: --width)")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for all runs (default: runs/compare/<dataset>_<arch>_w<width>)")
    args = parser.parse_args(argv)
    args.resume = True  # <out> is meant to be re-run: finished methods are reused, interrupted ones resumed
    try:
        with run_guard(args):
            table = compare_methods(methods=args.methods, seeds=args.seeds, out=args.out,
                                    teacher_arch=args.teacher_arch, teacher_width=args.teacher_width,
                                    **train_kwargs(args))
    except (Exception, KeyboardInterrupt) as exc:
        return fail(exc)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
