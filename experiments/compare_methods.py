"""Thin wrapper: ``python experiments/compare_methods.py --help`` = ``wxy-hw compare_methods --help`` (wxy_hw/cli/compare_methods.py)."""
import sys

from wxy_hw.cli.compare_methods import main

if __name__ == "__main__":
    sys.exit(main())
