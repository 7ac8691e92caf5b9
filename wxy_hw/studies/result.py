"""What every study returns (``StudyResult``), in a module of its own so that ``studies/train.py``, which the
spine itself builds on, returns one too."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StudyResult:
    """What every study returns: where it wrote, its main tidy rows, the table it printed, its figures.

    Each study is three stages with typed hand-overs: ``plan`` (settings checked, chips resolved, models
    found: nothing measured yet), ``measure`` (accuracy and cost), ``write`` (CSVs, table, figures,
    manifest), which returns this. ``details`` holds what one study adds (noise_sweep's raw rows, ...).
    """

    run_dir: Path
    table: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        """The dict the studies returned before (``result["run_dir"]``, ``["table"]``, ``["plots"]``, details)."""
        if key == "run_dir":
            return str(self.run_dir)
        if key == "plots":
            return [str(p) for p in self.figures]
        if key == "table":
            return self.table
        if key in self.details:
            return self.details[key]
        raise KeyError(key)
