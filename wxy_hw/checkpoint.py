"""Checkpoint format, atomic saving and validated loading (weights_only=True)."""
from __future__ import annotations

import re
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
        raise CheckpointError(f"checkpoint {path} {_load_problem(exc)}") from None
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
            raise CheckpointError(f"checkpoint {path} holds a different model: " + "; ".join(diffs))
    model = model_from_config(config)
    load_weights(model, payload, path)
    return model.to(device).eval()


def load_weights(model: MultiExitNet, payload: dict[str, Any], path: str | Path = "<checkpoint>") -> None:
    """Load a checkpoint's weights into an existing model, naming what differs on failure."""
    diffs = config_mismatch(payload["model_config"], model.config)
    if diffs:
        raise CheckpointError(f"checkpoint {path} does not fit this model: " + "; ".join(diffs))
    try:
        model.load_state_dict(payload["model_state"])
    except (RuntimeError, TypeError, AttributeError):
        raise CheckpointError(f"checkpoint {path}: weights do not fit the model "
                              f"({_state_mismatch(model.state_dict(), payload['model_state'])})") from None


def _load_problem(exc: Exception) -> str:
    """torch.load's failure in one line of our own words (its messages span lines and advise weights_only=False,
    which would let the file run code)."""
    text = str(exc)
    blocked = re.search(r"GLOBAL ([\w.]+)", text)
    if blocked:
        return (f"holds a Python object ({blocked.group(1)}) that no wxy_hw checkpoint contains; it was refused "
                "because loading it could run code: use a best.pt / last.pt written by experiments/train.py")
    if isinstance(exc, (EOFError, RuntimeError)) or "zip" in text or "EOF" in text:
        return "is truncated or damaged (not a complete torch file): re-run training to recreate it"
    return (f"is not a torch checkpoint ({type(exc).__name__}); it is truncated or not a wxy_hw checkpoint: "
            "give a best.pt / last.pt written by experiments/train.py")


def _state_mismatch(wanted: dict[str, Any], saved: Any) -> str:
    """'2 missing (e.g. fc.weight); 1 of another shape (e.g. fc.bias: 10 vs 100)' for a state dict that does not load."""
    if not isinstance(saved, dict):
        return f"model_state is a {type(saved).__name__}, not a state dict"
    missing = [k for k in wanted if k not in saved]
    extra = [k for k in saved if k not in wanted]
    shape = [k for k in wanted if k in saved and hasattr(saved[k], "shape") and saved[k].shape != wanted[k].shape]
    parts = [f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []
    parts += [f"{len(extra)} unexpected (e.g. {extra[0]})"] if extra else []
    if shape:
        k = shape[0]
        parts.append(f"{len(shape)} of another shape (e.g. {k}: {tuple(saved[k].shape)} vs {tuple(wanted[k].shape)})")
    return "; ".join(parts) or "tensors that cannot be copied"
