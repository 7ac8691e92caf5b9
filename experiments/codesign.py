"""Thin wrapper: ``python experiments/codesign.py --help`` = ``wxy-hw codesign --help`` (wxy_hw/cli/codesign.py)."""
import sys

from wxy_hw.cli.codesign import main

if __name__ == "__main__":
    sys.exit(main())
