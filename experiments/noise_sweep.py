"""Accuracy and loss of every exit on a simulated device, vs noise scale, vs time, plus the flat-minima curve.

    python experiments/noise_sweep.py --device reram
    python experiments/noise_sweep.py --device reram --workers 2     # sweep points as Ray tasks

With no checkpoint given it uses cached default models of baseline and self_distillation on
Fashion-MNIST (runs/cache/...), training them first when absent. Writes runs/noise_sweep/<device>_<backend>_<time>/
with manifest.json, sweep.csv (every chip), summary_*.csv, table.md and PNG/SVG plots.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wxy_hw.analysis.sweep import DEFAULT_SCALES, DEFAULT_SIGMAS
from wxy_hw.cli import (add_parallel_args, add_study_args, cached_budget, fail, nonneg_float, nonneg_int, parse_method_args, positive_int, report,
                        run_guard)
from wxy_hw.hardware.spec import available_devices
from wxy_hw.noise_experiment import noise_sweep_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="reram",
                        help=f"device name ({', '.join(available_devices())}) or path to a device .toml file")
    parser.add_argument("--device-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a device value, repeatable (e.g. --device-set noise.stuck_at_hrs=0.02)")
    parser.add_argument("--methods", nargs="+", default=["baseline", "self_distillation"],
                        help="methods whose cached default checkpoints to use (trained when absent)")
    parser.add_argument("--checkpoints", nargs="+", type=Path, default=None,
                        help="explicit best.pt files to sweep instead of the cached defaults")
    parser.add_argument("--backend", default="native", choices=["native", "aihwkit"])
    parser.add_argument("--scales", nargs="+", type=nonneg_float, default=list(DEFAULT_SCALES),
                        help="noise scales (× the device's nominal noise)")
    parser.add_argument("--times", nargs="+", type=nonneg_float, default=None,
                        help="inference times in s for drifting devices (default 1 s, 1 h, 1 day, 30 days, 1 year, "
                             "as far as the device model permits)")
    parser.add_argument("--t-inference", type=nonneg_float, default=None,
                        help="time of the noise-scale sweep (default: 1 day for drifting devices, else 1 s)")
    parser.add_argument("--sigmas", nargs="+", type=nonneg_float, default=list(DEFAULT_SIGMAS),
                        help="σ values of the flat-minima Gaussian sweep (× per-layer |W|max)")
    parser.add_argument("--no-flat", action="store_true", help="skip the flat-minima sweep")
    parser.add_argument("--bn-recalibrate", type=nonneg_int, default=0, metavar="N",
                        help="add a '<method> + BN recal' series: each chip re-estimates its BN statistics on N "
                             "unlabeled training images (N forward passes per chip; default 0 = off)")
    parser.add_argument("--realizations", type=positive_int, default=5, help="chip instances per point (default 5)")
    parser.add_argument("--samples", type=positive_int, default=1000, help="test images per evaluation (default 1000)")
    add_study_args(parser)
    add_parallel_args(parser)
    args = parser.parse_args(argv)
    budget = cached_budget(args)
    try:
        with run_guard(args):
            summary = noise_sweep_run(
                device=args.device, methods=args.methods, checkpoints=args.checkpoints, backend=args.backend,
                scales=args.scales, times=args.times, t_nominal=args.t_inference, sigmas=args.sigmas,
                realizations=args.realizations, samples=args.samples, dataset=args.dataset, data_dir=args.data_dir,
                out=args.out, seed=args.seed, overrides=parse_method_args(args.device_set, "--device-set"), flat=not args.no_flat,
                progress=not args.quiet, budget=budget, torch_device=args.torch_device,
                bn_recalibrate=args.bn_recalibrate, workers=args.workers, ray_address=args.ray_address)
    except (Exception, KeyboardInterrupt) as exc:
        return fail(exc)
    return report(summary)


if __name__ == "__main__":
    sys.exit(main())
