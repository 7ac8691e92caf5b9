#!/usr/bin/env python
"""Archive a finished run's small files under results/<name>/, with the commit it was run at.

    python scripts/archive_run.py runs/reproduce/small reproduce_small

Copies what a reader needs to trust a table and rerun it — report.md, claims.json, commands.sh,
config.toml, manifest.json, table.md, results.json and the run's CSVs (each under 1 MB; never checkpoints or
figures) — keeping the run's folder structure, and writes commit.txt: the commit the run was made at (from
its manifest) and the commit of this repository when archived (each saying whether the work tree had
uncommitted changes). An existing archive of the same
name is replaced whole (written beside it first, then swapped), never merged; any other folder of that name
(not an archive: no commit.txt) is refused, never replaced.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from wxy_hw.cli.vocabulary import OneLineParser
from wxy_hw.run_dir import ARCHIVE_MARK, archive_of

KEEP_NAMES = {"report.md", "claims.json", "commands.sh", "config.toml", "manifest.json", "table.md", "steps.json",
              "results.json"}
KEEP_SUFFIXES = {".csv", ".toml"}  # .toml: the run's config and, for a search, each design's config
MAX_BYTES = 1_000_000
ROOT = Path(__file__).resolve().parent.parent


def small_files(run: Path) -> list[Path]:
    """The files worth archiving, relative to ``run``."""
    return sorted(p.relative_to(run) for p in run.rglob("*")
                  if p.is_file() and (p.name in KEEP_NAMES or p.suffix in KEEP_SUFFIXES)
                  and p.stat().st_size <= MAX_BYTES)


def run_commit(run: Path) -> str:
    """The commit the run was made at, as its manifest recorded it (wxy_hw manifests carry git.commit / dirty)."""
    try:
        git = json.loads((run / "manifest.json").read_text()).get("git") or {}
    except (OSError, ValueError, AttributeError):
        return "not recorded"
    if not isinstance(git, dict) or not git.get("commit"):
        return "not recorded"
    return str(git["commit"]) + (" (with uncommitted changes)" if git.get("dirty") else "")


def run_command(run: Path) -> str | None:
    """The command line the run's manifest recorded, as run from the repository (``python experiments/<study>.py``
    for a study's script), or None."""
    try:
        argv = json.loads((run / "manifest.json").read_text()).get("command")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(argv, list) or not argv:
        return None
    script = f"python experiments/{argv[0]}" if str(argv[0]).endswith(".py") else str(argv[0])
    return " ".join([script, *(shlex.quote(str(a)) for a in argv[1:])])


def commit_line() -> str:
    """The repository's HEAD commit, and whether tracked files differ from it."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.strip()
    return head.strip() + (" (with uncommitted changes)" if dirty else "") + "\n"


def archive(run: Path, name: str, results: Path = ROOT / "results") -> Path:
    """Copy ``run``'s small files to <results>/<name>/ (replacing an earlier archive whole); the new folder."""
    if not (run / "manifest.json").is_file():
        raise SystemExit(f"error: {run} is not a finished run (no manifest.json); give a run directory")
    if not name or "/" in name or name.startswith("."):
        raise SystemExit(f"error: archive name {name!r} must be one plain folder name, e.g. reproduce_small")
    target = results / name
    if target.exists() and archive_of(target) != Path(os.path.abspath(target)):
        raise SystemExit(f"error: {target} exists and is not an archive this script wrote (no {ARCHIVE_MARK} beside a "
                         "manifest.json), so it is not replaced: choose another name, or move that folder away")
    staging = target.with_name(f".{name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for rel in small_files(run):
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run / rel, staging / rel)
    (staging / ARCHIVE_MARK).write_text(f"run: {run_commit(run)}\narchived at: {commit_line()}")
    if not (staging / "commands.sh").exists():
        command = run_command(run)
        if command:
            (staging / "commands.sh").write_text(f"#!/bin/sh\n# the command that made this run (from its manifest)\n{command}\n")
    old = target.with_name(f".{name}.old")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished run directory")
    parser.add_argument("name", help="the folder under results/")
    args = parser.parse_args(argv)
    print(archive(args.run, args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
