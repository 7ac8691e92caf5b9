"""Thin wrapper: ``python experiments/quant_sweep.py --help`` = ``wxy-hw quant_sweep --help`` (wxy_hw/cli/quant_sweep.py)."""
import sys

from wxy_hw.cli.quant_sweep import main

if __name__ == "__main__":
    sys.exit(main())
