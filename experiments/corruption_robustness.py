"""Thin wrapper: ``python experiments/corruption_robustness.py --help`` = ``wxy-hw corruption_robustness --help``
(wxy_hw/cli/corruption_robustness.py)."""
import sys

from wxy_hw.cli.corruption_robustness import main

if __name__ == "__main__":
    sys.exit(main())
