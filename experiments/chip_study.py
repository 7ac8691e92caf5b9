"""Chip-architecture study: accuracy and energy / area / latency of one model over array size × ADC bits
× bits per cell × device, per exit, with Pareto fronts and the NeuroSim VGG-8 validation.

    python experiments/chip_study.py
    python experiments/chip_study.py --validate      # the cost model against NeuroSim and measured chips

With no checkpoint it uses the cached default self_distillation model (trained when absent).
Accuracy comes from the native engine with the configuration's array size (partial sums
digitised per array), ADC bits, input (DAC) precision and the device's noise; cost from
wxy_hw/hardware/chip.py. The architecture flags are early_exit_energy.py's, each taking a list
here (the study sweeps their product); defaults: rows 64 128 256 512, ADC bits 3 4 6 8, bits per
cell 1 2 4. Writes runs/chip_study/<time>/ with study.csv, front.csv, validation.csv, table.md,
manifest.json and the plots pareto_energy, pareto_area, energy_breakdown (PNG and SVG).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wxy_hw.chip_experiment import chip_study_run, validate
from wxy_hw.cli import add_chip_args, add_study_args, fail, nonneg_float, positive_int, report, run_guard, study_kwargs
from wxy_hw.hardware.spec import available_devices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="self_distillation", help="method of the cached default model")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a best.pt to study instead")
    parser.add_argument("--devices", nargs="+", default=["reram", "pcm", "subthreshold_cmos", "digital_int8"],
                        help=f"devices ({', '.join(available_devices())})")
    parser.add_argument("--validate", action="store_true",
                        help="only validate the cost model against NeuroSim and measured chips: prints the table, "
                             "writes validation.csv")
    add_chip_args(parser, sweep=True)
    parser.add_argument("--cols-per-adc", type=positive_int, default=8)
    parser.add_argument("--ir-beta-per-row", type=nonneg_float, default=0.0,
                        help="IR-drop attenuation per row on a column (β = this × rows); default off")
    parser.add_argument("--chips", type=positive_int, default=2, help="chip instances per configuration (default 2)")
    parser.add_argument("--samples", type=positive_int, default=500, help="test images (default 500)")
    add_study_args(parser)
    args = parser.parse_args(argv)
    try:
        if args.validate:
            return report(validate(args.out))
        sweep = {k: v for k, v in dict(rows=args.rows, cols=args.cols, adc_bits=args.adc_bits, dac_bits=args.dac_bits,
                                       bits_per_cell=args.bits_per_cell, weight_bits=args.weight_bits,
                                       act_bits=args.act_bits, ranging=args.ranging).items() if v is not None}
        with run_guard(args):
            summary = chip_study_run(
                method=args.method, checkpoint=args.checkpoint, devices=args.devices, **sweep,
                input_activity=args.input_activity, cols_per_adc=args.cols_per_adc,
                ir_beta_per_row=args.ir_beta_per_row, chips=args.chips, samples=args.samples, dataset=args.dataset,
                **study_kwargs(args))
    except (Exception, KeyboardInterrupt) as exc:
        return fail(exc)
    return report(summary)


if __name__ == "__main__":
    sys.exit(main())
