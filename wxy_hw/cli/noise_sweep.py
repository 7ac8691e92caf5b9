"""Accuracy and loss of every exit on a simulated device, vs noise scale, vs time, plus the flat-minima curve.

    python experiments/noise_sweep.py --device reram          (or: wxy-hw noise_sweep --device reram)
    python experiments/noise_sweep.py --device reram --seeds 0 1 2   # intervals over training seeds × chips
    python experiments/noise_sweep.py --device reram --workers 2     # sweep points as Ray tasks

With no checkpoint given it compares the cached default models of baseline, self_distillation,
hwa and self_distillation+hwa (the hwa models trained through --device's noise) on Fashion-MNIST
(runs/cache/...), training them first when absent, each also with its BN statistics recalibrated
through the chip (--bn-recalibrate N images; 0 turns the series off). Writes runs/noise_sweep/<device>_<backend>_<time>/
with config.toml, manifest.json, sweep.csv (every chip of the curves), headline.csv (the table's nominal point:
--headline-chips chips × --headline-samples images, each chip beside the digital accuracy on the same images),
digital.csv, summary_*.csv, table.md and PNG/SVG plots.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from ..studies.noise_sweep import NoiseSweepConfig, noise_sweep_run
from . import (add_chip_settings, add_chips_arg, add_models_args, add_parallel_args, add_study_args,
               add_t_inference_arg, defaults, new_parser, nonneg_float, nonneg_int, positive_int, run_study, seed_int)


def build_parser() -> argparse.ArgumentParser:
    """The noise_sweep command line."""
    d = defaults(NoiseSweepConfig)
    parser = new_parser(__doc__, "noise_sweep")
    add_models_args(parser, d["methods"], "explicit best.pt files to sweep instead of the cached defaults")
    parser.add_argument("--backend", default=d["backend"], choices=["native", "aihwkit"], help="accuracy engine")
    parser.add_argument("--scales", nargs="+", type=nonneg_float, default=d["scales"],
                        help="noise scales (× the device's nominal noise)")
    parser.add_argument("--times", nargs="+", type=nonneg_float, default=d["times"],
                        help="inference times in s for drifting devices (None: 1 s, 1 h, 1 day, 30 days, 1 year, "
                             "as far as the device model permits)")
    add_t_inference_arg(parser, d["t_inference"], "time of the noise-scale sweep")
    parser.add_argument("--sigmas", nargs="+", type=nonneg_float, default=d["sigmas"],
                        help="σ values of the flat-minima Gaussian sweep (× per-layer |W|max)")
    parser.add_argument("--no-flat", dest="flat", action="store_false", help="skip the flat-minima sweep")
    parser.add_argument("--bn-recalibrate", type=nonneg_int, default=d["bn_recalibrate"], metavar="N",
                        help="add a '<method> + BN recal' series: each chip re-estimates its BN statistics on N "
                             "unlabeled training images (N forward passes per chip; 0 = off), at the table's nominal "
                             "point")
    parser.add_argument("--bn-recalibrate-curves", action="store_true",
                        help="the '+ BN recal' series on the noise and time curves too (chips deployed one at a "
                             "time: about doubles the sweep's time)")
    add_chips_arg(parser, d["chips"], "chip instances per point of the curves")
    parser.add_argument("--samples", type=positive_int, default=d["samples"], help="test images per chip on the curves")
    parser.add_argument("--headline-chips", type=positive_int, default=d["headline_chips"],
                        help="chips at the table's nominal point (more than the curves': the chip-to-chip spread "
                             "dominates there)")
    parser.add_argument("--headline-samples", type=positive_int, default=d["headline_samples"],
                        help="test images per chip at the nominal point")
    parser.add_argument("--digital-samples", type=positive_int, default=d["digital_samples"],
                        help="test images of the digital accuracy (None: the whole test set)")
    parser.add_argument("--seeds", type=seed_int, nargs="+", default=d["seeds"],
                        help="training seeds of the cached default models: one sweep each into <out>/s<seed>, then "
                             "mean and 95 %% interval over seeds × chips and paired tests against the baseline (None: "
                             "0 1 2, the zoo's, or --seed alone when it is not 0; a single seed: one plain sweep)")
    add_study_args(parser)
    add_parallel_args(parser, d["workers"], d["ray_address"])
    add_chip_settings(parser, NoiseSweepConfig)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the noise sweep from the command line; the exit status."""
    return run_study(argv, build_parser(), NoiseSweepConfig, noise_sweep_run)
