"""``wxy-hw <study> [options]`` (or ``python -m wxy_hw.cli <study>``): one command for every study CLI."""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

COMMANDS = {
    "train": "train one model with one method",
    "compare_methods": "train several methods over seeds, table with intervals",
    "noise_sweep": "accuracy vs device noise and time, flat minima",
    "early_exit_energy": "per-exit accuracy and energy, early exit on a device",
    "chip_study": "chip architecture sweep: accuracy vs energy / area, Pareto fronts",
    "quant_sweep": "accuracy vs weight / activation bits (PTQ, QAT)",
    "corruption_robustness": "corruptions, mCE, adversarial accuracy, on hardware",
    "calibrator_adapt": "the input Calibrator on a domain pair or on chip instances",
    "codesign": "search network shape x training x chip for on-chip accuracy, yield and energy (Optuna)",
    "reproduce": "the seed's claims at one budget: report.html / report.md with verdicts",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to ``wxy_hw.cli.<study>.main``; the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name.ljust(width)}  {what}" for name, what in COMMANDS.items()]
        print("usage: wxy-hw <study> [options]   (wxy-hw <study> --help for its options)\n\nstudies:\n"
              + "\n".join(lines), file=sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown study {argv[0]!r}", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return importlib.import_module(f"wxy_hw.cli.{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
