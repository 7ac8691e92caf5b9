"""Chip-architecture study: accuracy and energy / area / latency of one model over array size × ADC bits
× bits per cell × device, per exit, with Pareto fronts and the NeuroSim VGG-8 validation.

    python experiments/chip_study.py                 (or: wxy-hw chip_study)
    python experiments/chip_study.py --validate      # the cost model against NeuroSim and measured chips

With no checkpoint it uses the cached default self_distillation model (trained when absent).
Accuracy comes from the native engine with the configuration's array size (partial sums
digitised per array), ADC bits, input (DAC) precision and the device's noise; cost from
wxy_hw/hardware/cost.py (chip_report of the same chip). The architecture flags are early_exit_energy.py's, each taking a list
here (the study sweeps their product); --device-set changes every swept device's values, in
accuracy and energy alike. Writes runs/chip_study/<time>/ with config.toml, study.csv,
front.csv, validation.csv, table.md, manifest.json and the plots pareto_energy, pareto_area,
energy_breakdown (PNG and SVG).
"""
from __future__ import annotations

import argparse
from typing import Sequence

from ..hardware.spec import available_devices
from ..studies.chip_study import ChipStudyConfig, chip_study_run
from ..studies.chip_validation import ValidationConfig, validate
from . import (add_checkpoints_arg, add_chip_args, add_chips_arg, add_device_set_arg, add_parallel_args, add_study_args,
               defaults, fail, new_parser, nonneg_float, parse, positive_int, report, run_guard, run_study)


def build_parser() -> argparse.ArgumentParser:
    """The chip_study command line."""
    d = defaults(ChipStudyConfig)
    parser = new_parser(__doc__, "chip_study")
    parser.add_argument("--method", default=d["method"], help="method of the cached default model")
    add_checkpoints_arg(parser, "one best.pt to study instead of the cached default", single_alias=True)
    parser.add_argument("--devices", nargs="+", default=d["devices"],
                        help=f"simulated hardware, each a name ({', '.join(available_devices())}) or a .toml path")
    add_device_set_arg(parser, d["device_set"])  # applied to every device of --devices
    parser.add_argument("--validate", action="store_true",
                        help="only validate the cost model against NeuroSim and measured chips: prints the table, "
                             "writes validation.csv")
    add_chip_args(parser, sweep=True, defaults=d)
    parser.add_argument("--cols-per-adc", type=positive_int, default=d["cols_per_adc"], help="columns sharing one ADC")
    parser.add_argument("--ir-beta-per-row", type=nonneg_float, default=d["ir_beta_per_row"],
                        help="IR-drop attenuation per row on a column (β = this × rows); 0 = off")
    add_chips_arg(parser, d["chips"], "chip instances per configuration", old=None)
    parser.add_argument("--samples", type=positive_int, default=d["samples"], help="test images")
    add_parallel_args(parser, d["workers"], d["ray_address"])
    add_study_args(parser)
    return parser


VALIDATE_ALONE = ("validate", "out", "quiet", "progress", "overwrite", "config")  # what --validate takes


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chip study (or --validate) from the command line; the exit status."""
    parser = build_parser()
    args = parse(parser, argv, ChipStudyConfig)
    if args.validate:
        # the validation prices published chips and NeuroSim's, none of this study's: a flag beside it is refused
        unset = {k: None if parser.get_default(k) == argparse.SUPPRESS else parser.get_default(k) for k in vars(args)}
        ignored = [k for k, v in vars(args).items() if k not in VALIDATE_ALONE and v != unset[k]]
        if ignored:
            parser.error(f"--validate checks the cost model on its own references and takes none of the study's "
                         f"settings: drop --{ignored[0].replace('_', '-')} (or --validate)")
        try:
            with run_guard(args, kind=ValidationConfig.KIND):
                return report(validate(args.out))
        except (Exception, KeyboardInterrupt) as exc:
            return fail(exc)
    return run_study(argv, parser, ChipStudyConfig, chip_study_run, args)
