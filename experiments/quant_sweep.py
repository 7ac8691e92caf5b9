"""Per-exit accuracy vs weight / activation bits (Brevitas PTQ, and QAT checkpoints), digital and on a device.

    python experiments/quant_sweep.py --device reram

PTQ calibrates activation scales on validation batches; QAT models come from
`experiments/train.py --method self_distillation+qat --method-arg weight_bits=4` and are passed with
--qat-checkpoints. Writes runs/quant_sweep/<device>_<time>/ with quant_sweep.csv, table.md, plots.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wxy_hw.cli import add_study_args, fail, nonneg_float, positive_int, report, run_guard
from wxy_hw.quant_experiment import quant_sweep_run


def bits(text: str) -> int | None:
    return None if text.lower() in ("none", "float", "32") else int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="reram")
    parser.add_argument("--methods", nargs="+", default=["baseline", "self_distillation"])
    parser.add_argument("--checkpoints", nargs="+", type=Path, default=None)
    parser.add_argument("--qat-checkpoints", nargs="+", type=Path, default=[])
    parser.add_argument("--weight-bits", nargs="+", type=int, default=[8, 6, 4, 3, 2])
    parser.add_argument("--act-bits", nargs="+", type=bits, default=[8], help="activation bits (none = float)")
    parser.add_argument("--per-channel", action="store_true", help="per-output-channel weight scales")
    parser.add_argument("--realizations", type=positive_int, default=3)
    parser.add_argument("--samples", type=positive_int, default=1000)
    parser.add_argument("--t-inference", type=nonneg_float, default=None)
    add_study_args(parser, cached_models=False)
    args = parser.parse_args(argv)
    try:
        with run_guard(args):
            summary = quant_sweep_run(device=args.device, methods=args.methods, checkpoints=args.checkpoints,
                                      qat_checkpoints=args.qat_checkpoints, weight_bits=args.weight_bits,
                                      act_bits=args.act_bits, per_channel=args.per_channel,
                                      realizations=args.realizations, samples=args.samples, t_nominal=args.t_inference,
                                      dataset=args.dataset, data_dir=args.data_dir, out=args.out, seed=args.seed,
                                      torch_device=args.torch_device, progress=not args.quiet)
    except (Exception, KeyboardInterrupt) as exc:
        return fail(exc)
    return report(summary)


if __name__ == "__main__":
    sys.exit(main())
