"""Corruption robustness (Fashion-MNIST-C style), mCE, adversarial accuracy, and the same table on hardware.

    python experiments/corruption_robustness.py

With no checkpoint given it uses cached default models (runs/cache/...) of baseline, augment,
ada, auxiliary, adv and hwa (reram noise: does weight-noise robustness buy corruption robustness?),
training them first when absent. Corrupted test sets are generated
deterministically and cached (runs/cache/corruptions). Writes runs/robustness/<time>/ with
corruption.csv, corruption_errors.csv, adversarial.csv, hardware.csv, feature_consistency.csv,
table.md, manifest.json and PNG/SVG plots (accuracy vs severity, feature PCA, hardware).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wxy_hw.cli import (add_study_args, fail, nonneg_float, nonneg_int, positive_int, report, run_guard, severity,
                        study_kwargs)
from wxy_hw.data.corruptions import available_corruptions
from wxy_hw.hardware.spec import available_devices
from wxy_hw.robustness_experiment import DEFAULT_CORRUPTIONS, DEFAULT_METHODS, corruption_robustness_run
from wxy_hw.analysis.robustness import DEFAULT_ATTACKS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                        help="methods whose cached default checkpoints to use (trained when absent)")
    parser.add_argument("--checkpoints", nargs="+", type=Path, default=None,
                        help="explicit best.pt files instead of the cached defaults (a 'baseline' one anchors mCE)")
    parser.add_argument("--corruptions", nargs="+", default=list(DEFAULT_CORRUPTIONS),
                        help=f"corruptions to evaluate (available: {', '.join(available_corruptions())})")
    parser.add_argument("--severities", nargs="+", type=severity, default=[1, 2, 3, 4, 5])
    parser.add_argument("--corrupted-dir", type=Path, default=None,
                        help="evaluate on a published Hendrycks-format set (<corruption>.npy + labels.npy, e.g. "
                             "CIFAR-10-C) instead of generating the corruptions; --corruptions then names its files")
    parser.add_argument("--samples", type=positive_int, default=2000, help="test images for the corruption table (default 2000)")
    parser.add_argument("--adv-samples", type=nonneg_int, default=1000, help="test images attacked (0 skips; default 1000)")
    parser.add_argument("--eps-linf", type=nonneg_float, default=DEFAULT_ATTACKS["pgd_linf"]["eps"],
                        help="L∞ budget of FGSM and PGD-L∞ in pixel units (default 0.1)")
    parser.add_argument("--eps-l2", type=nonneg_float, default=DEFAULT_ATTACKS["pgd_l2"]["eps"],
                        help="L2 budget of PGD-L2 in pixel units (default 1.0)")
    parser.add_argument("--pgd-steps", type=positive_int, default=20)
    parser.add_argument("--devices", nargs="*", default=["reram", "subthreshold_cmos"],
                        help=f"devices for the hardware table ({', '.join(available_devices())}); none skips it")
    parser.add_argument("--chips", type=nonneg_int, default=3, help="chip instances per device (default 3)")
    parser.add_argument("--hw-samples", type=positive_int, default=500, help="test images per chip evaluation (default 500)")
    parser.add_argument("--hw-severities", nargs="+", type=severity, default=[1, 3, 5])
    add_study_args(parser)
    args = parser.parse_args(argv)
    attacks = {"fgsm": dict(eps=args.eps_linf), "pgd_linf": dict(eps=args.eps_linf, steps=args.pgd_steps),
               "pgd_l2": dict(eps=args.eps_l2, steps=args.pgd_steps)}
    try:
        with run_guard(args):
            summary = corruption_robustness_run(
                methods=args.methods, checkpoints=args.checkpoints, corruptions=args.corruptions, severities=args.severities,
                samples=args.samples, attacks=attacks, adv_samples=args.adv_samples, devices=args.devices, chips=args.chips,
                hw_samples=args.hw_samples, hw_severities=args.hw_severities, dataset=args.dataset, corrupted_dir=args.corrupted_dir,
                **study_kwargs(args))
    except (Exception, KeyboardInterrupt) as exc:
        return fail(exc)
    return report(summary)


if __name__ == "__main__":
    sys.exit(main())
