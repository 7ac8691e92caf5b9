#!/usr/bin/env python
"""Remove study runs under runs/ (what `make clean` calls), never one a running process is writing.

    python scripts/clean_runs.py            # lists every run folder, asks once (default: keep)
    python scripts/clean_runs.py --yes      # removes without asking (still never a folder in use)

Each folder is listed with its size; one holding a run that a live process writes (its `.lock`, or a lock of a
run inside it: a training under `compare_methods`, `reproduce` or `train_zoo.py`) is kept whatever the answer,
and one holding an interrupted training that `--resume` could continue says so. runs/cache (the trained default
models, minutes to retrain) gets its own question. Without a terminal to ask on, nothing is removed unless
--yes is given: a script or CI job never deletes hours of training by default.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from wxy_hw.cli.vocabulary import OneLineParser
from wxy_hw.run_dir import in_use, read_marker

CACHE = "cache"


def size_text(path: Path) -> str:
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) if path.is_dir() \
        else path.lstat().st_size
    for unit in ("B", "KB", "MB", "GB"):
        if total < 1024 or unit == "GB":
            return f"{total:.0f} {unit}" if unit == "B" else f"{total:.1f} {unit}"
        total /= 1024
    return ""


def resumable(path: Path) -> bool:
    """Whether ``path`` holds an unfinished training run with a last.pt (hours a --resume would keep)."""
    if not path.is_dir() or path.is_symlink():
        return False
    for last in path.rglob("last.pt"):
        marker = read_marker(last.parent)
        if marker is not None and marker.get("status") != "complete":
            return True
    return False


def ask(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        print(f"{question} no terminal to ask on: kept (pass --yes to remove)")
        return False
    try:
        return input(f"{question} [y/N] ").strip().lower() == "y"
    except EOFError:
        return False


def remove(paths: list[Path]) -> None:
    for path in paths:
        holder = in_use(path)  # again just before: a run may have started since the list was shown
        if holder is not None:
            print(f"kept {path}: now being written by {holder}")
        elif path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            print(f"removed {path}")
        else:
            path.unlink()
            print(f"removed {path}")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--yes", action="store_true", help="remove without asking (folders in use are still kept)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the folder of study runs")
    args = parser.parse_args(argv)
    if not args.runs.is_dir():
        print(f"no {args.runs}/: nothing to remove")
        return 0
    entries = sorted(p for p in args.runs.iterdir() if p.name != CACHE)
    removable = []
    for path in entries:
        holder = in_use(path)
        note = f"in use by {holder}: kept" if holder else \
            "holds an interrupted training (--resume continues it)" if resumable(path) else ""
        print(f"  {path}  {size_text(path)}" + (f"  [{note}]" if note else ""))
        if holder is None:
            removable.append(path)
    if removable and ask(f"remove these {len(removable)} run folder(s) of {args.runs}/?", args.yes):
        remove(removable)
    elif not entries:
        print(f"no study runs in {args.runs}/")
    cache = args.runs / CACHE
    if cache.is_dir():
        holder = in_use(cache)
        if holder is not None:
            print(f"kept {cache}: in use by {holder}")
        elif ask(f"also remove the trained default models in {cache} ({size_text(cache)})?", args.yes):
            remove([cache])
        else:
            print(f"kept {cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
