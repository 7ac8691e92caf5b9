"""Thin wrapper: ``python experiments/early_exit_energy.py --help`` = ``wxy-hw early_exit_energy --help``
(wxy_hw/cli/early_exit_energy.py)."""
import sys

from wxy_hw.cli.early_exit_energy import main

if __name__ == "__main__":
    sys.exit(main())
