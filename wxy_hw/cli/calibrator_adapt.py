"""Light-weight Calibrator: adapt a frozen classifier to a new input domain, or to one noisy chip.

    python experiments/calibrator_adapt.py --source mnist5k --target digits     (or: wxy-hw calibrator_adapt ...)
    python experiments/calibrator_adapt.py --source fashion_mnist --target fashion_mnist-C --corruption gaussian_noise
    python experiments/calibrator_adapt.py --source fashion_mnist --target none --device reram --chips 5

Domain pair: source-only vs a DANN reference (fine-tuned features) vs the calibrator (classifier
frozen) — target accuracy and source accuracy after adaptation — plus FFT spectra of source,
target and calibrated target. Chip instances: for each chip, no calibration vs a calibrator
trained (in simulation, unlabeled) for that chip vs chip-in-the-loop weight fine-tuning, and
every calibrator on every other chip. --device, --device-set and the architecture flags set the
one chip that the chip instances deploy and that prices the calibrator's energy (the device file's
converters unless --adc-bits is given: the shipped files have none, so accuracy runs with ideal
converters and the energy is priced at 8-bit ADCs; the tables say so). The classifier is the cached
default baseline of --source (trained when absent) or --checkpoints. Writes runs/calibrator/<time>/
(with config.toml).
"""
from __future__ import annotations

import argparse
from typing import Sequence

from ..data import available_datasets
from ..data.corruptions import available_corruptions
from ..studies.calibrator_adapt import CalibratorConfig, calibrator_adapt_run
from . import (seed_int, Deprecated, add_chip_settings, add_checkpoints_arg, add_chips_arg, add_study_args, calibrator_blocks,
               calibrator_width, defaults, new_parser, positive_float, positive_int, run_study, severity)


def build_parser() -> argparse.ArgumentParser:
    """The calibrator_adapt command line."""
    d = defaults(CalibratorConfig)
    parser = new_parser(__doc__, "calibrator_adapt")
    parser.add_argument("--source", default=d["source"], choices=available_datasets(),
                        help="source dataset (the classifier's)")
    parser.add_argument("--target", default=d["target"],
                        help="target dataset, <dataset>-C for a corrupted copy, or none (chip calibration only)")
    parser.add_argument("--corruption", default=d["corruption"], choices=available_corruptions(),
                        help="corruption of a -C target")
    parser.add_argument("--severity", type=severity, default=d["severity"], help="severity of a -C target, 1-5")
    add_chip_settings(parser, CalibratorConfig, " for chip-instance calibration (None skips it; the energy is "
                      "then priced on reram)")
    add_chips_arg(parser, d["chips"], "chip instances (ids seed·1000 + 0 .. N-1: each --seed its own chips)", old=None)
    parser.add_argument("--chip-seeds", "--chip-seed", dest="chip_seeds", nargs="+", type=seed_int,
                        action=Deprecated, new="--chips N (ids seed·1000 + 0 .. N-1)")
    add_checkpoints_arg(parser, "one best.pt to adapt instead of the cached default", single_alias=True)
    parser.add_argument("--epochs", type=positive_int, default=d["epochs"], help="calibrator / DANN / fine-tuning epochs")
    parser.add_argument("--width", type=calibrator_width, default=d["width"], help="calibrator channels")
    parser.add_argument("--blocks", type=calibrator_blocks, default=d["blocks"], help="calibrator residual blocks")
    parser.add_argument("--epsilon", type=positive_float, default=d["epsilon"],
                        help="bound of the perturbation (normalised units)")
    parser.add_argument("--samples", type=positive_int, default=d["samples"], help="images per split used")
    add_study_args(parser, dataset=False)  # --source / --target name the data
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the calibrator study from the command line; the exit status."""
    return run_study(argv, build_parser(), CalibratorConfig, calibrator_adapt_run)
