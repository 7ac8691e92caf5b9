"""Per-exit accuracy and energy on a device, and real early exit at thresholds searched on validation.

    python experiments/early_exit_energy.py --device reram

Uses cached default models (baseline, dsn, self_distillation, scan on Fashion-MNIST), training them
when absent. The architecture flags (--rows --cols --adc-bits --dac-bits --bits-per-cell --weight-bits
--act-bits, the same as chip_study's) set the one chip that both accuracy and energy describe;
energy comes from wxy_hw.hardware.chip_report with input-bit activity measured on a fixed, seeded
selection of training images (per_exit.csv: device_energy_pJ = study.csv's energy_pJ for the same
configuration). Writes runs/early_exit/<device>_<time>/ with per_exit.csv, dynamic.csv, front.csv,
table.md, manifest.json and the plots energy_vs_accuracy, threshold_front, exit_shares.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wxy_hw.cli import (add_chip_args, add_study_args, cached_budget, chip_kwargs, fail, nonneg_float, nonneg_int,
                        positive_int, report, run_guard)
from wxy_hw.early_exit_experiment import early_exit_run
from wxy_hw.hardware.spec import available_devices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="reram", help=f"{', '.join(available_devices())} or a .toml path")
    parser.add_argument("--methods", nargs="+", default=["baseline", "dsn", "self_distillation", "scan"])
    parser.add_argument("--checkpoints", nargs="+", type=Path, default=None)
    parser.add_argument("--realizations", type=positive_int, default=3, help="chips (each gets its own thresholds)")
    parser.add_argument("--samples", type=positive_int, default=2000, help="validation and test images used")
    parser.add_argument("--t-inference", type=nonneg_float, default=None)
    parser.add_argument("--bn-recalibrate", type=nonneg_int, default=0, metavar="N",
                        help="each chip re-estimates its BN statistics on N unlabeled training images after "
                             "deployment (N forward passes per chip; default 0 = off)")
    add_chip_args(parser)
    add_study_args(parser)
    args = parser.parse_args(argv)
    budget = cached_budget(args)
    try:
        with run_guard(args):
            summary = early_exit_run(device=args.device, methods=args.methods, checkpoints=args.checkpoints,
                                     realizations=args.realizations, samples=args.samples, t_nominal=args.t_inference,
                                     dataset=args.dataset, data_dir=args.data_dir, out=args.out, seed=args.seed,
                                     budget=budget, torch_device=args.torch_device, progress=not args.quiet,
                                     chip=chip_kwargs(args), bn_recalibrate=args.bn_recalibrate)
    except (Exception, KeyboardInterrupt) as exc:
        return fail(exc)
    return report(summary)


if __name__ == "__main__":
    sys.exit(main())
