"""Thin wrapper: ``python experiments/calibrator_adapt.py --help`` = ``wxy-hw calibrator_adapt --help`` (wxy_hw/cli/calibrator_adapt.py)."""
import sys

from wxy_hw.cli.calibrator_adapt import main

if __name__ == "__main__":
    sys.exit(main())
