"""Run directories, manifests and the seed-style result tables."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from .utils import atomic_write_text

TRACKED_PACKAGES = ("torch", "numpy", "scipy", "aihwkit", "brevitas", "scikit-learn", "mlxtend", "wxy_hw")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape results."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(repo: Path | None = None) -> dict[str, Any]:
    """HEAD commit and whether the work tree had uncommitted changes (None outside git)."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        return {"commit": head, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


class RunDirectory:
    """A results directory with a manifest written at start and completed at the end."""

    def __init__(self, path: str | Path, config: dict[str, Any], *, kind: str) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.t0 = time.time()
        self.manifest: dict[str, Any] = {
            "kind": kind,
            "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
            "config": config,
            "seed": config.get("seed"),
            "versions": package_versions(),
            "git": git_commit(),
            "host": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "status": "running",
        }
        self.write_manifest()

    def write_manifest(self) -> Path:
        """(Re)write manifest.json atomically."""
        return atomic_write_text(self.path / "manifest.json", json.dumps(self.manifest, indent=2, default=str) + "\n")

    def finish(self, **results: Any) -> Path:
        """Record results and wall time; mark the run complete."""
        self.manifest.update(results)
        self.manifest["wall_time_s"] = round(time.time() - self.t0, 2)
        self.manifest["status"] = "complete"
        return self.write_manifest()


def exit_columns(num_exits: int) -> list[str]:
    """Seed-style column names: Classifier 1/4 ... 4/4."""
    return [f"Classifier {i + 1}/{num_exits}" for i in range(num_exits)]


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str = "") -> str:
    """A plain-text (markdown-compatible) table; floats with two decimals, missing cells as '—'."""
    def cell(v: Any) -> str:
        if v is None:
            return "—"
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    line = lambda cells: "| " + " | ".join(s.ljust(w) for s, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [title] if title else []
    out += [line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(b) for b in body]
    return "\n".join(out)


def seed_table_row(label: str, exit_accuracy: Sequence[float], ensemble: float | None,
                   baseline: float | None = None) -> dict[str, Any]:
    """One row of the seed's Table 1: Baseline | Classifier i/N ... | Ensemble."""
    row: dict[str, Any] = {"Model": label, "Baseline": baseline}
    n = len(exit_accuracy)
    if n > 1:
        row.update(zip(exit_columns(n), exit_accuracy))
        row["Ensemble"] = ensemble
    return row
