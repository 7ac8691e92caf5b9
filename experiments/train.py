"""Thin wrapper: ``python experiments/train.py --help`` = ``wxy-hw train --help`` (wxy_hw/cli/train.py)."""
import sys

from wxy_hw.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
