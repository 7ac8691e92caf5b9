"""Thin wrapper: ``python experiments/chip_study.py --help`` = ``wxy-hw chip_study --help`` (wxy_hw/cli/chip_study.py)."""
import sys

from wxy_hw.cli.chip_study import main

if __name__ == "__main__":
    sys.exit(main())
