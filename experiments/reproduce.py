"""Thin wrapper: ``python experiments/reproduce.py --help`` = ``wxy-hw reproduce --help`` (wxy_hw/cli/reproduce.py)."""
import sys

from wxy_hw.cli.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
