"""Per-exit accuracy and energy on a device, and real early exit at thresholds searched on validation.

    python experiments/early_exit_energy.py --device reram     (or: wxy-hw early_exit_energy --device reram)
    python experiments/early_exit_energy.py --device reram --chips 20 --workers 4   # chips as Ray tasks

Uses cached default models (baseline, dsn, self_distillation, scan on Fashion-MNIST), training them
when absent. --device, --device-set and the architecture flags (--rows --cols --adc-bits --dac-bits
--bits-per-cell --weight-bits --act-bits, the same as chip_study's) set the one chip that both
accuracy and energy describe (the int8 column: a digital_int8 chip of the same array size and bits);
energy comes from wxy_hw.hardware.chip_report with input-bit activity measured on a fixed, seeded
selection of training images (per_exit.csv: device_energy_pJ = study.csv's energy_pJ for the same
configuration). Writes runs/early_exit/<device>_<time>/ with config.toml, per_exit.csv, dynamic.csv,
front.csv, table.md, manifest.json and the plots energy_vs_accuracy, threshold_front, exit_shares.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from ..studies.early_exit_energy import EarlyExitConfig, early_exit_run
from . import (add_t_inference_arg, add_chip_settings, add_models_args, add_chips_arg, add_parallel_args, add_study_args, defaults,
               new_parser, nonneg_int, positive_int, run_study)


def build_parser() -> argparse.ArgumentParser:
    """The early_exit_energy command line."""
    d = defaults(EarlyExitConfig)
    parser = new_parser(__doc__, "early_exit_energy")
    add_models_args(parser, d["methods"], "explicit best.pt files instead of the cached defaults")
    add_chips_arg(parser, d["chips"], "chip instances (each gets its own thresholds)")
    parser.add_argument("--samples", type=positive_int, default=d["samples"], help="validation and test images used")
    add_t_inference_arg(parser, d["t_inference"])
    parser.add_argument("--bn-recalibrate", type=nonneg_int, default=d["bn_recalibrate"], metavar="N",
                        help="each chip re-estimates its BN statistics on N unlabeled training images after "
                             "deployment (N forward passes per chip; 0 = off)")
    add_chip_settings(parser, EarlyExitConfig)
    add_parallel_args(parser, d["workers"], d["ray_address"])
    add_study_args(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the early-exit energy study from the command line; the exit status."""
    return run_study(argv, build_parser(), EarlyExitConfig, early_exit_run)
