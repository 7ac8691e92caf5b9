"""Rerun the seed's claims at one budget and write one self-contained report.

    python experiments/reproduce.py --budget small      # ≤ 30 min on a 2-core CPU
    python experiments/reproduce.py --budget medium     # the studies' default-model budget, 3 seeds (hours)
    python experiments/reproduce.py --budget full       # all images, 30 epochs, 5 seeds (a GPU machine)
    python experiments/reproduce.py --budget smoke      # a few minutes on synthetic images (for tests)

Writes <out>/report.html (figures embedded; no external file or network), report.md,
claims.json and commands.sh (every command behind every number). Rerunning the same command
reuses every finished step; an interrupted run continues where it stopped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wxy_hw.cli import fail, run_guard
from wxy_hw.reproduce import BUDGETS, Reproduction


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="small", choices=list(BUDGETS),
                        help="how much to train and sample (default: small)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: runs/reproduce/<budget>)")
    parser.add_argument("--data-dir", type=Path, default=None, help="directory holding the dataset files")
    parser.add_argument("--torch-device", default="auto", help="torch device for training and evaluation (default auto)")
    parser.add_argument("--quiet", action="store_true", help="only the report's location and verdict counts")
    args = parser.parse_args(argv)
    args.out = args.out or Path("runs") / "reproduce" / args.budget
    args.resume = True  # <out> is meant to be re-run: finished steps are reused
    try:
        with run_guard(args):
            rep = Reproduction(BUDGETS[args.budget], args.out, torch_device=args.torch_device, data_dir=args.data_dir,
                               log=(lambda msg: None) if args.quiet else print)
            html_path, md_path = rep.run()
    except (Exception, KeyboardInterrupt) as exc:
        return fail(exc)
    counts = {v: sum(c.verdict == v for c in rep.claims) for v in ("reproduced", "not reproduced", "inconclusive")}
    print(", ".join(f"{n} {v}" for v, n in counts.items()) + f" of {len(rep.claims)} claims")
    print(f"report: {html_path}\n        {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
