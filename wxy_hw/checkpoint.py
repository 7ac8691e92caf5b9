"""Checkpoint format, atomic saving and validated loading (weights_only=True)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .models.multi_exit import MultiExitNet, model_from_config
from .utils import atomic_torch_save

FORMAT = "wxy_hw.checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not match what it is loaded into."""


def save_checkpoint(path: str | Path, model: MultiExitNet, **extra: Any) -> Path:
    """Write model config + weights (+ any extra state) atomically."""
    payload = {"format": FORMAT, "model_config": dict(model.config), "model_state": model.state_dict()}
    payload.update(extra)
    return atomic_torch_save(payload, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict safely, with one clear error for every way it can be wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; give the path of a best.pt or last.pt "
                              "written by experiments/train.py")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); "
                              "it is truncated or not a wxy_hw checkpoint — re-run training to recreate it") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a wxy_hw checkpoint (format {FORMAT!r} expected)")
    return payload


def config_mismatch(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Human-readable differences between two model configs ("key: saved X, wanted Y")."""
    diffs = []
    for key in sorted(set(saved) | set(wanted)):
        if saved.get(key) != wanted.get(key):
            diffs.append(f"{key}: checkpoint has {saved.get(key)!r}, expected {wanted.get(key)!r}")
    return diffs


def load_model(path: str | Path, expect: dict[str, Any] | MultiExitNet | None = None,
               device: str | torch.device = "cpu") -> MultiExitNet:
    """Rebuild the model stored in a checkpoint, in eval mode; if ``expect`` is given, require the same config."""
    payload = read_checkpoint(path)
    config = payload["model_config"]
    if expect is not None:
        wanted = expect.config if isinstance(expect, MultiExitNet) else expect
        diffs = config_mismatch(config, wanted)
        if diffs:
            raise CheckpointError(f"checkpoint {path} holds a different model:\n  " + "\n  ".join(diffs))
    model = model_from_config(config)
    load_weights(model, payload, path)
    return model.to(device).eval()


def load_weights(model: MultiExitNet, payload: dict[str, Any], path: str | Path = "<checkpoint>") -> None:
    """Load a checkpoint's weights into an existing model, naming what differs on failure."""
    diffs = config_mismatch(payload["model_config"], model.config)
    if diffs:
        raise CheckpointError(f"checkpoint {path} does not fit this model:\n  " + "\n  ".join(diffs))
    try:
        model.load_state_dict(payload["model_state"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path}: weights do not fit the model ({exc})") from exc
