"""Light-weight Calibrator: adapt a frozen classifier to a new input domain, or to one noisy chip.

    python experiments/calibrator_adapt.py --source mnist5k --target digits
    python experiments/calibrator_adapt.py --source fashion_mnist --target fashion_mnist-C --corruption gaussian_noise
    python experiments/calibrator_adapt.py --source fashion_mnist --target none --device reram --chip-seeds 0 1 2 3 4

Domain pair: source-only vs a DANN reference (fine-tuned features) vs the calibrator (classifier
frozen) — target accuracy and source accuracy after adaptation — plus FFT spectra of source,
target and calibrated target. Chip instances: for each chip seed, no calibration vs a calibrator
trained (in simulation, unlabeled) for that chip vs chip-in-the-loop weight fine-tuning, and
every calibrator on every other chip. The classifier is the cached default baseline of
--source (trained when absent) or --checkpoint. Writes runs/calibrator/<time>/.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wxy_hw.calibrator_experiment import calibrator_adapt_run
from wxy_hw.cli import (add_study_args, fail, positive_float, positive_int, report, run_guard, severity,
                        study_kwargs)
from wxy_hw.data import available_datasets
from wxy_hw.data.corruptions import available_corruptions
from wxy_hw.hardware.spec import available_devices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="mnist5k", choices=available_datasets(),
                        help="source dataset (the classifier's)")
    parser.add_argument("--target", default="digits",
                        help="target dataset, <dataset>-C for a corrupted copy, or none (chip calibration only)")
    parser.add_argument("--corruption", default="gaussian_noise", choices=available_corruptions(),
                        help="corruption of a -C target")
    parser.add_argument("--severity", type=severity, default=5)
    parser.add_argument("--device", default=None, help=f"chip-instance calibration on ({', '.join(available_devices())})")
    parser.add_argument("--chip-seeds", "--chip-seed", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--checkpoint", type=Path, default=None, help="a best.pt to adapt instead of the cached default")
    parser.add_argument("--epochs", type=positive_int, default=5, help="calibrator / DANN / fine-tuning epochs (default 5)")
    parser.add_argument("--width", type=positive_int, default=8, help="calibrator width (default 8)")
    parser.add_argument("--blocks", type=positive_int, default=1, help="calibrator residual blocks (default 1)")
    parser.add_argument("--epsilon", type=positive_float, default=1.0, help="bound of the perturbation (normalised units)")
    parser.add_argument("--samples", type=positive_int, default=2000, help="images per split used (default 2000)")
    add_study_args(parser, dataset=False)  # --source / --target name the data
    args = parser.parse_args(argv)
    try:
        with run_guard(args):
            summary = calibrator_adapt_run(
                source=args.source, target=None if str(args.target).lower() == "none" else args.target, device=args.device,
                chip_seeds=args.chip_seeds, checkpoint=args.checkpoint, corruption=args.corruption, severity=args.severity,
                epochs=args.epochs, width=args.width, blocks=args.blocks, epsilon=args.epsilon, samples=args.samples,
                **study_kwargs(args))
    except (Exception, KeyboardInterrupt) as exc:
        return fail(exc)
    return report(summary)


if __name__ == "__main__":
    sys.exit(main())
