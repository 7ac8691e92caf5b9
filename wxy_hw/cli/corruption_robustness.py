"""Corruption robustness (Fashion-MNIST-C style), mCE, adversarial accuracy, and the same table on hardware.

    python experiments/corruption_robustness.py      (or: wxy-hw corruption_robustness)

With no checkpoint given it uses cached default models (runs/cache/...) of baseline, augment,
ada, auxiliary, adv and hwa (reram noise: does weight-noise robustness buy corruption robustness?),
training them first when absent. --device-set changes values of every device of the hardware
table (accuracy only: this study prices no energy). Corrupted test sets are generated
deterministically and cached (runs/cache/corruptions). Writes runs/robustness/<time>/ with
config.toml, corruption.csv, corruption_errors.csv, adversarial.csv, hardware.csv, feature_consistency.csv,
table.md, manifest.json and PNG/SVG plots (accuracy vs severity, feature PCA, hardware).
"""
from __future__ import annotations

import argparse
from typing import Sequence

from ..data.corruptions import available_corruptions
from ..hardware.spec import available_devices
from ..studies.corruption_robustness import RobustnessConfig, corruption_robustness_run
from . import (add_models_args, add_chips_arg, add_device_set_arg, add_study_args, defaults, new_parser, nonneg_float,
               nonneg_int, positive_int, run_study, severity)


def build_parser() -> argparse.ArgumentParser:
    """The corruption_robustness command line."""
    d = defaults(RobustnessConfig)
    parser = new_parser(__doc__, "corruption_robustness")
    add_models_args(parser, d["methods"], "explicit best.pt files instead of the cached defaults (a 'baseline' one "
                    "anchors mCE)")
    parser.add_argument("--corruptions", nargs="+", default=d["corruptions"],
                        help=f"corruptions to evaluate (available: {', '.join(available_corruptions())})")
    parser.add_argument("--severities", nargs="+", type=severity, default=d["severities"], help="severities 1-5")
    parser.add_argument("--corrupted-dir", default=None,
                        help="evaluate on a published Hendrycks-format set (<corruption>.npy + labels.npy, e.g. "
                             "CIFAR-10-C) instead of generating the corruptions; --corruptions then names its files")
    parser.add_argument("--samples", type=positive_int, default=d["samples"], help="test images for the corruption table")
    parser.add_argument("--adv-samples", type=nonneg_int, default=d["adv_samples"], help="test images attacked (0 skips)")
    parser.add_argument("--eps-linf", type=nonneg_float, default=d["eps_linf"],
                        help="L∞ budget of FGSM and PGD-L∞ in pixel units")
    parser.add_argument("--eps-l2", type=nonneg_float, default=d["eps_l2"], help="L2 budget of PGD-L2 in pixel units")
    parser.add_argument("--pgd-steps", type=positive_int, default=d["pgd_steps"], help="PGD iterations")
    parser.add_argument("--devices", nargs="*", default=d["devices"],
                        help=f"simulated hardware for the hardware table ({', '.join(available_devices())} or .toml "
                             "paths); none skips it")
    add_device_set_arg(parser, d["device_set"])  # applied to every device of --devices
    add_chips_arg(parser, d["chips"], "chip instances per device (0 skips the hardware table)", old=None,
                  kind=nonneg_int)
    parser.add_argument("--hw-samples", type=positive_int, default=d["hw_samples"], help="test images per chip evaluation")
    parser.add_argument("--hw-severities", nargs="+", type=severity, default=d["hw_severities"],
                        help="severities of the hardware table")
    add_study_args(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the corruption-robustness study from the command line; the exit status."""
    return run_study(argv, build_parser(), RobustnessConfig, corruption_robustness_run)
