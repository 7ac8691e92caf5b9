"""What a manifest records about the software (package versions, git commit), and the seed-style result tables.

Run directories, locks and manifests live in ``wxy_hw.run_dir``."""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from .output import format_table  # noqa: F401  (re-exported: results tables)

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


def exit_columns(num_exits: int) -> list[str]:
    """Seed-style column names: Classifier 1/4 ... 4/4."""
    return [f"Classifier {i + 1}/{num_exits}" for i in range(num_exits)]


def seed_table_row(label: str, exit_accuracy: Sequence[float], ensemble: float | None,
                   baseline: float | None = None) -> dict[str, Any]:
    """One row of the seed's Table 1: Baseline | Classifier i/N ... | Ensemble."""
    row: dict[str, Any] = {"Model": label, "Baseline": baseline}
    n = len(exit_accuracy)
    if n > 1:
        row.update(zip(exit_columns(n), exit_accuracy))
        row["Ensemble"] = ensemble
    return row
