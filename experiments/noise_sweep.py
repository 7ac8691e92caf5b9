"""Thin wrapper: ``python experiments/noise_sweep.py --help`` = ``wxy-hw noise_sweep --help`` (wxy_hw/cli/noise_sweep.py)."""
import sys

from wxy_hw.cli.noise_sweep import main

if __name__ == "__main__":
    sys.exit(main())
