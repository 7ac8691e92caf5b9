"""Finished training runs of other folders (``--reuse DIR``): a run trained there with exactly the settings asked is
the model asked for, so it is adopted (evaluated, not retrained) with a record of where it came from — how a
comparison or a reproduction builds on one made before without copying folders by hand."""
from __future__ import annotations

import functools
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..checkpoint import CheckpointError
from ..methods import changed_defaults
from ..run_dir import machine_seconds
from .train import read_finished, recorded_start
from .zoo import same_model


def check_folders(folders: Sequence[str | Path], *, reproductions: bool = False) -> list[Path]:
    """The folders to reuse from, each an existing comparison folder (``<method>/s<seed>/best.pt`` runs in it) or,
    with ``reproductions``, reproduction folder (such comparisons in its ``methods*/``): a typo, one kind given for
    the other, or an archive (results/ keeps no checkpoints) fails before any training."""
    runs, kind = ("methods*/*/s*/best.pt", "reproduction") if reproductions else ("*/s*/best.pt", "comparison")
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise ValueError(f"--reuse {folder}: no such folder; give the --out of an earlier {kind}")
        if not any(run.parent.name[1:].isdigit() for run in folder.glob(runs)):
            layout = "methods/<method>/s<seed>/best.pt" if reproductions else "<method>/s<seed>/best.pt"
            other = ("" if reproductions else "; a reproduction's trainings are in its methods/ and "
                     "methods_<device>/")
            raise ValueError(f"--reuse {folder}: no {layout} in it (an archive under results/ keeps no checkpoints: "
                             f"give the run's folder under runs/{other})")
    return [Path(f) for f in folders]


def find_earlier(relative: str | Path, settings: dict[str, Any],
                 folders: Sequence[Path]) -> tuple[Path, dict[str, Any]] | None:
    """The best.pt of the first finished run at ``<folder>/<relative>`` trained with exactly ``settings`` (a
    training run's, as ``zoo.same_model`` compares them; its start and teacher by the sha256 its manifest recorded),
    and its provenance; None when no folder holds one.

    Only read: a damaged, unfinished or unreadable run there is passed over, never set aside or continued (it is
    not this command's); so is one resumed with another learning rate, start or teacher than it began with (its
    settings no longer say how it was trained)."""
    for folder in folders:
        run = Path(folder) / relative
        try:
            manifest = read_finished(run, fix="")
            if manifest is None or manifest.get("kind") != "train" or _changed_on_resume(manifest):
                continue
            recorded = tomllib.loads((run / "config.toml").read_text())
            if not same_model(recorded, settings, functools.partial(_same_file, manifest)):
                continue
            if changed_defaults(str(settings["method"]), settings.get("method_options") or {},
                                manifest.get("config", {}).get("method_options") or {}):
                continue  # trained when one of the method's defaults was another: not the model asked for
        except (OSError, ValueError, CheckpointError):  # ValueError: damaged JSON, TOML or text
            continue
        git = manifest.get("git")
        git = git if isinstance(git, dict) else {}
        # its sha256: that of the bytes adopt_run reads and adopts
        source = {"run": str(run.resolve()), "commit": git.get("commit"), "dirty": git.get("dirty")}
        if manifest.get("adopted_from"):  # itself adopted: where the model first came from stays on record
            source["via"] = manifest["adopted_from"]
        via = manifest.get("adopted_from")
        seconds = (via.get("train_seconds") if isinstance(via, dict) else None) if via else machine_seconds(manifest)
        if seconds is not None:  # its training time goes with it: reproduce --plan counts training every model
            source["train_seconds"] = round(float(seconds), 1)
        return run / "best.pt", source
    return None


def _changed_on_resume(manifest: dict[str, Any]) -> bool:
    """Whether the run continued with other settings than it began with (a lowered learning rate, another start or
    teacher) at any of its resumes: anything one recorded beyond the epoch it continued from."""
    resumes = [manifest, *(r for r in manifest.get("earlier_resumes") or [] if isinstance(r, dict))]
    for resume in resumes:
        resumed = resume.get("resumed_from")
        if resume.get("resumed_with") or (isinstance(resumed, dict) and set(resumed) - {"epoch"}):
            return True
    return False


def _same_file(manifest: dict[str, Any], key: str, theirs: Any, asked: Any) -> bool:
    """Whether the run started from (``init``) or learnt from (``teacher``) the file now at ``asked``, by the sha256
    its manifest recorded (a run that recorded none is not reused: its file cannot be told apart)."""
    if theirs is None or asked is None:
        return theirs is None and asked is None
    return Path(asked).is_file() and recorded_start(manifest, asked, key) is True
