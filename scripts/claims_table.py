#!/usr/bin/env python
"""Print a reproduction's claims as the Markdown table docs/results.md shows (its report's table without the
command column and without each claim's note, which the report adds to the claim), from the run's or its
archive's claims.json:

    python scripts/claims_table.py results/reproduce_decide
    python scripts/claims_table.py results/reproduce_hardware --family extension --section "reram"

So a table in the docs is a command's output, and tests/test_archive.py can check it still is.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wxy_hw.analysis.report import markdown_cell as cell

HEADER = ["| section | claim | seed | ours (mean [95 % CI]; paired Δ over seeds) | verdict |", "|---|---|---|---|---|"]


def claims_table(run: Path, family: str | None = None, section: str | None = None) -> list[str]:
    """The table's lines for the claims of ``run`` (a folder holding claims.json), optionally only one family's or
    those whose section contains ``section``."""
    path = run / "claims.json"
    try:
        claims = json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"claims_table: {path} does not exist: give a finished reproduction's folder or its archive "
                         "under results/") from None
    except ValueError as exc:
        raise SystemExit(f"claims_table: {path} is not JSON ({exc}): rerun the reproduction to write it again") from None
    rows = [c for c in claims if (family is None or c.get("family") == family)
            and (section is None or section in c.get("section", ""))]
    lines = list(HEADER)
    for c in rows:
        why = f" ({c['reason']})" if c.get("reason") else ""
        lines.append(f"| {cell(c['section'])} | {cell(c['claim'])} | {cell(c['seed_value'])} | {cell(c['ours'])} | "
                     f"**{cell(c['verdict'])}**{cell(why)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a finished reproduction's folder, or its archive under results/")
    ap.add_argument("--family", choices=("seed", "extension"), help="only the seed's claims, or only ours")
    ap.add_argument("--section", help="only claims whose section contains this text")
    args = ap.parse_args(argv)
    sys.stdout.write("\n".join(claims_table(args.run, args.family, args.section)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
