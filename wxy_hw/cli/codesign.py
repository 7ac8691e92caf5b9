"""Co-design search: which network shape, trained how, on which chip, survives the hardware at the least energy.

    python experiments/codesign.py --device reram          (or: wxy-hw codesign --device reram)
    python experiments/codesign.py --device reram --confirm-seeds 1 2 3 \
        --grid baseline self_distillation hwa self_distillation+hwa --trainings 4     # against today's grid
    python experiments/codesign.py --device reram --out runs/codesign/r1 --resume     # continue a stopped search
    python experiments/codesign.py --config RUN/configs/trial_0007.toml --out NEW     # one design again, alone

Optuna (NSGA-II, or TPE) proposes designs: network shape (--arch --width --stem-stride --exit-stage-sets
--heads), training (--methods, --hwa-noise), chip (--rows --adc-bits --bits-per-cell --parallel-rows --ranging)
and deployment (--bn-recalibrate; early-exit thresholds are searched on validation through each chip). Each
model trains once (runs/cache, then the shipped zoo), pruned by --pruner on its validation curve; --trainings
caps how many models the search trains. Objectives (--objectives) from the native engine over --chips chips and
the cost model: accuracy, p10_accuracy, yield, energy, latency, area. The reference — the default model on the
main job's chip — is measured at the same budget; --confirm-seeds retrains the front's best points and it from
scratch. Writes runs/codesign/<device>_<time>/ with config.toml, study.db (the Optuna study), trials.csv,
front.csv, chips.csv, importances.csv, confirm*.csv, configs/trial_<n>.toml, front.png / .svg, table.md and
manifest.json.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from ..hardware.chip import RANGING
from ..studies.codesign import OBJECTIVES, PRUNERS, SAMPLERS, CodesignConfig, codesign_run
from . import (add_t_inference_arg, add_device_arg, add_device_set_arg, add_parallel_args, add_study_args, array_size, config_of, defaults,
               fail, new_parser, nonneg_float, nonneg_int, parse, positive_float, positive_int, report, run_guard,
               seed_int, width_multiplier)


def subset(text: str) -> int:
    """--train-subset: a number of training images, or 'all' (0, as a config file writes it)."""
    if text in ("all", "0"):
        return 0
    return positive_int(text)


subset.__name__ = "an integer ≥ 1 or 'all'"


def build_parser() -> argparse.ArgumentParser:
    """The codesign command line."""
    d = defaults(CodesignConfig)
    parser = new_parser(__doc__, "codesign")
    add_device_arg(parser, d["device"])
    add_device_set_arg(parser, d["device_set"])
    add_t_inference_arg(parser, d["t_inference"])
    g = parser.add_argument_group("network shape (each a list the search chooses from)")
    g.add_argument("--arch", nargs="+", default=d["arch"], help="backbones")
    g.add_argument("--width", nargs="+", type=width_multiplier, default=d["width"], help="channel width multipliers")
    g.add_argument("--stem-stride", nargs="+", type=int, choices=[1, 2], default=d["stem_stride"],
                   help="ResNet stem strides (1 costs about 4x the MACs of 2)")
    g.add_argument("--exit-stage-sets", nargs="+", default=d["exit_stage_sets"], metavar="STAGES",
                   help="stages carrying exits in multi-exit models, each as digits with the deepest (234, 34, 1234)")
    g.add_argument("--heads", nargs="+", default=d["heads"], help="exit head kinds of multi-exit models")
    g = parser.add_argument_group("training")
    g.add_argument("--methods", nargs="+", default=d["methods"], help="training methods (compositions with +)")
    g.add_argument("--hwa-noise", nargs="+", type=positive_float, default=d["hwa_noise"],
                   help="noise strengths of hardware-aware training (the device's noise × this)")
    g.add_argument("--train-epochs", type=positive_int, default=d["train_epochs"], help="epochs of every model")
    g.add_argument("--train-subset", type=subset, default=d["train_subset"],
                   help="training images of every model ('all' or 0: the whole training split)")
    g.add_argument("--retrain", action="store_true",
                   help="train every model afresh, neither reusing runs/cache nor the shipped zoo")
    g = parser.add_argument_group("chip and deployment (each a list the search chooses from)")
    g.add_argument("--rows", nargs="+", type=array_size, default=d["rows"], help="crossbar rows (square arrays)")
    g.add_argument("--adc-bits", nargs="+", type=positive_int, default=d["adc_bits"], help="ADC resolutions")
    g.add_argument("--bits-per-cell", nargs="+", type=nonneg_int, default=d["bits_per_cell"],
                   help="weight bits per cell (0: the device file's own cells, each weight one value on them, simulated and "
                        "priced as such; 1..: "
                        "8-bit weights bit-sliced onto cells of that many bits, each slice with its own noise, in "
                        "accuracy and cost alike)")
    g.add_argument("--parallel-rows", nargs="+", type=nonneg_int, default=d["parallel_rows"],
                   help="rows read and digitised at once (0: a whole array); each group's partial sum gets its own "
                        "conversion, in accuracy and cost alike (a group of 32 on 256 rows costs ~3-8x the "
                        "measurement time)")
    g.add_argument("--ranging", nargs="+", choices=list(RANGING), default=d["ranging"], help="converter ranging")
    g.add_argument("--bn-recalibrate", nargs="+", type=nonneg_int, default=d["bn_recalibrate"],
                   help="BN recalibration images per chip after deployment (0: off)")
    g = parser.add_argument_group("objectives and the search")
    g.add_argument("--objectives", nargs="+", choices=list(OBJECTIVES), default=d["objectives"],
                   help="what the search optimises; every one is measured and written either way")
    g.add_argument("--chips", type=positive_int, default=d["chips"], help="chip instances per design")
    g.add_argument("--samples", type=positive_int, default=d["samples"], help="validation and test images per chip")
    g.add_argument("--yield-margin", type=nonneg_float, default=d["yield_margin"],
                   help="a chip counts towards yield within this many points of the digital accuracy")
    g.add_argument("--trials", type=positive_int, default=d["trials"], help="designs to measure")
    g.add_argument("--trainings", type=positive_int, default=d["trainings"],
                   help="most models the search trains (the reference's not counted): its compute budget")
    g.add_argument("--population", type=positive_int, default=d["population"], help="NSGA-II population size")
    g.add_argument("--sampler", choices=list(SAMPLERS), default=d["sampler"], help="Optuna sampler")
    g.add_argument("--pruner", choices=list(PRUNERS), default=d["pruner"],
                   help="stops poor trainings on their validation curve, judged among the earlier trainings of the "
                        "same method on the same backbone (halving: with fewer than about 6 such trainings it keeps "
                        "only the best so far at each rung)")
    g.add_argument("--confirm-seeds", nargs="+", type=seed_int, default=d["confirm_seeds"],
                   help="retrain the front's best points and the reference from scratch with these seeds")
    g.add_argument("--confirm-points", type=positive_int, default=d["confirm_points"],
                   help="front points to confirm (the most accurate)")
    g.add_argument("--grid", nargs="+", default=d["grid"], metavar="METHOD",
                   help="also measure today's grid for an equal-compute comparison: these methods on the default "
                        "shape × every chip of --rows × --adc-bits × --bits-per-cell (first --ranging, no BN "
                        "recalibration); give the search as many --trainings as methods here")
    g.add_argument("--resume", action="store_true", help="continue the search in --out from its study.db")
    add_parallel_args(parser, d["workers"], d["ray_address"])
    add_study_args(parser, cached_models=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or resume) the co-design search from the command line; the exit status."""
    parser = build_parser()
    args = parse(parser, argv, CodesignConfig)
    if args.resume and args.out is None:
        parser.error("--resume continues the search in --out: give --out RUN_DIR")
    try:
        config = config_of(CodesignConfig, args)
        with run_guard(args, kind=CodesignConfig.KIND):
            summary = codesign_run(config, out=args.out, progress=args.progress, resume=args.resume)
    except (Exception, KeyboardInterrupt) as exc:
        return fail(exc)
    return report(summary)
