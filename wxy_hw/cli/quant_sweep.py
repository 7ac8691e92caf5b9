"""Per-exit accuracy vs weight / activation bits (Brevitas PTQ, and QAT checkpoints), digital and on a device.

    python experiments/quant_sweep.py --device reram           (or: wxy-hw quant_sweep --device reram)
    python experiments/quant_sweep.py --device reram --workers 4   # the points as Ray tasks

Each (weight bits, activation bits) point runs on one chip: the device with its --device-set values, the
device file's converters unless --adc-bits is set, and the point's bit widths; its accuracy and its
energy are those of that chip (the table title states the converters).

PTQ calibrates activation scales on validation batches; QAT models come from
`experiments/train.py --method self_distillation+qat --method-arg weight_bits=4` and are passed with
--qat-checkpoints. Writes runs/quant_sweep/<device>_<time>/ with config.toml, quant_sweep.csv, table.md, plots.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from ..studies.quant_sweep import QuantSweepConfig, bits, quant_sweep_run
from . import (add_t_inference_arg, add_device_arg, add_device_set_arg, add_models_args, add_chips_arg, add_parallel_args, add_study_args,
               defaults, new_parser, positive_int, run_study)


def build_parser() -> argparse.ArgumentParser:
    """The quant_sweep command line."""
    d = defaults(QuantSweepConfig)
    parser = new_parser(__doc__, "quant_sweep")
    add_device_arg(parser, d["device"])
    add_device_set_arg(parser, d["device_set"])
    parser.add_argument("--adc-bits", type=positive_int, default=d["adc_bits"],
                        help="ADC resolution of every point's chip, 2-16 (None: the device file's converters; a file "
                             "without them is simulated with ideal converters, its energy priced with 8-bit ADCs)")
    add_models_args(parser, d["methods"], "explicit best.pt files instead of the cached defaults")
    parser.add_argument("--qat-checkpoints", nargs="+", default=d["qat_checkpoints"], metavar="BEST_PT",
                        help="quantization-aware checkpoints (trained with --method ...+qat)")
    parser.add_argument("--weight-bits", nargs="+", type=int, default=d["weight_bits"], help="weight bits of PTQ")
    parser.add_argument("--act-bits", nargs="+", type=bits, default=d["act_bits"],
                        help="activation bits of PTQ (none = float)")
    parser.add_argument("--per-channel", action="store_true", help="per-output-channel weight scales")
    add_chips_arg(parser, d["chips"], "chip instances per point")
    parser.add_argument("--samples", type=positive_int, default=d["samples"], help="test images per evaluation")
    parser.add_argument("--calib-batches", type=positive_int, default=d["calib_batches"],
                        help="validation batches (256 images) that calibrate PTQ activation scales")
    add_t_inference_arg(parser, d["t_inference"])
    add_parallel_args(parser, d["workers"], d["ray_address"])
    add_study_args(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the quantization sweep from the command line; the exit status."""
    return run_study(argv, build_parser(), QuantSweepConfig, quant_sweep_run)
