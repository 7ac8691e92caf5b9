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
import sys
from pathlib import Path

from wxy_hw.cli.vocabulary import OneLineParser
from wxy_hw.analysis.report import markdown_cell as cell
from wxy_hw.cli import fail
from wxy_hw.utils import DamagedFileError, read_json

HEADER = ["| section | claim | seed | ours (mean [95 % CI]; paired Δ over seeds) | verdict |", "|---|---|---|---|---|"]
FIELDS = ("section", "claim", "seed_value", "ours", "verdict")  # what each claim of claims.json must hold
RERUN = "rerun the reproduction to write it again (python experiments/reproduce.py --budget BUDGET)"


def read_claims(run: Path) -> list[dict]:
    """The claims in ``run``/claims.json, each checked to hold the table's fields; a missing, unreadable or
    malformed file is refused in one line (a ValueError) naming it and the fix."""
    path = run / "claims.json"
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a reproduction's claims file: give a finished reproduction's "
                         "folder or its archive under results/")
    if not path.is_file():
        raise ValueError(f"{path} does not exist: give a finished reproduction's folder or its archive under "
                         "results/ (e.g. results/reproduce_decide)")
    try:
        claims = read_json(path, fix=RERUN, kind=list)
    except OSError as exc:
        raise ValueError(f"{path} cannot be read ({exc.strerror or exc}): check its permissions, or {RERUN}") from None
    for i, c in enumerate(claims):
        if not isinstance(c, dict):
            raise DamagedFileError(path, f"holds {str(c)[:60]} as claim #{i}, not an object with "
                                         f"{', '.join(FIELDS)} as reproduce.py writes it", RERUN)
        missing = [f for f in FIELDS if f not in c]
        if missing:
            raise DamagedFileError(path, f"holds claim #{i} without {', '.join(missing)}, not as reproduce.py writes "
                                         "it", RERUN)
    return claims


def claims_table(run: Path, family: str | None = None, section: str | None = None) -> list[str]:
    """The table's lines for the claims of ``run`` (a folder holding claims.json), optionally only one family's or
    those whose section contains ``section``."""
    claims = read_claims(run)
    rows = [c for c in claims if (family is None or c.get("family") == family)
            and (section is None or section in str(c["section"]))]
    lines = list(HEADER)
    for c in rows:
        why = f" ({c['reason']})" if c.get("reason") else ""
        lines.append(f"| {cell(c['section'])} | {cell(c['claim'])} | {cell(c['seed_value'])} | {cell(c['ours'])} | "
                     f"**{cell(c['verdict'])}**{cell(why)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a finished reproduction's folder, or its archive under results/")
    ap.add_argument("--family", choices=("seed", "extension"), help="only the seed's claims, or only ours")
    ap.add_argument("--section", help="only claims whose section contains this text")
    args = ap.parse_args(argv)
    try:
        lines = claims_table(args.run, args.family, args.section)
    except Exception as exc:  # a user error is one line, exit 2 (as every CLI); anything else a bug
        return fail(exc)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
