"""Finished training runs of other folders (``--reuse DIR``): a run trained there with exactly the settings asked is
the model asked for, so it is adopted (evaluated, not retrained) with a record of where it came from — how a
comparison or a reproduction builds on one made before without copying folders by hand."""
from __future__ import annotations

import functools
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..checkpoint import CheckpointError, read_checkpoint
from ..utils import DamagedFileError, file_sha256, read_json
from .zoo import same_model


def check_folders(folders: Sequence[str | Path], flag: str = "--reuse") -> list[Path]:
    """The folders to reuse from, each an existing directory (a typo fails before any training)."""
    missing = [str(f) for f in folders if not Path(f).is_dir()]
    if missing:
        raise ValueError(f"{flag} {missing[0]}: no such folder; give the --out of an earlier comparison or "
                         "reproduction")
    return [Path(f) for f in folders]


def find_earlier(relative: str | Path, settings: dict[str, Any],
                 folders: Sequence[Path]) -> tuple[Path, dict[str, Any]] | None:
    """The first finished run at ``<folder>/<relative>`` trained with exactly ``settings`` (a training run's, as
    ``zoo.same_model`` compares them; its start and teacher by the sha256 its manifest recorded), with its
    provenance; None when no folder holds one.

    Only read: a damaged or unfinished run there is passed over, never set aside or continued (it is not this
    command's)."""
    for folder in folders:
        run = Path(folder) / relative
        manifest, recorded = _finished(run)
        if manifest is None or recorded is None:
            continue
        if same_model(recorded, settings, functools.partial(_same_file, manifest)):
            best = run / "best.pt"
            return best, {"run": str(run.resolve()), "sha256": file_sha256(best),
                          "commit": (manifest.get("git") or {}).get("commit")}
    return None


def _finished(run: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """A finished run's manifest and training settings (its config.toml) when they and its results read back."""
    try:
        manifest = read_json(run / "manifest.json", fix="")
        if manifest.get("status") != "complete" or manifest.get("kind") != "train":
            return None, None
        read_json(run / "results.json", fix="")
        read_checkpoint(run / "best.pt")
        return manifest, tomllib.loads((run / "config.toml").read_text())
    except (OSError, DamagedFileError, CheckpointError, tomllib.TOMLDecodeError):
        return None, None


def _same_file(manifest: dict[str, Any], key: str, theirs: Any, asked: Any) -> bool:
    """Whether the run started from (``init``) or learnt from (``teacher``) the file now at ``asked``: by the
    sha256 its manifest recorded (a run that recorded none is not reused: its file cannot be told apart)."""
    if theirs is None or asked is None:
        return theirs is None and asked is None
    record = manifest.get(key)
    return (isinstance(record, dict) and bool(record.get("sha256")) and Path(asked).is_file()
            and record["sha256"] == file_sha256(asked))
