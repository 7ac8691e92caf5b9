"""Checkpoint format, atomic saving and validated loading (weights_only=True)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .models.attach import attach_exits, plain_config
from .models.multi_exit import MultiExitNet
from .models.rebuild import model_from_config
from .utils import atomic_torch_save

FORMAT = "wxy_hw.checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not match what it is loaded into."""


def save_checkpoint(path: str | Path, model: MultiExitNet, **extra: Any) -> Path:
    """Write model config + weights (+ any extra state) atomically."""
    config = getattr(model, "config", None) or plain_config(model)  # a user network: its class, by name only
    payload = {"format": FORMAT, "model_config": dict(config), "model_state": model.state_dict()}
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
               device: str | torch.device = "cpu", *, model: nn.Module | None = None) -> nn.Module:
    """Rebuild the model stored in a checkpoint, in eval mode; if ``expect`` is given, require the same config.

    A user architecture cannot be rebuilt from a file (no code is ever imported from one): pass
    ``model=`` — the network as constructed, with or without its exits — see ``load_into``.
    """
    if model is not None:
        return load_into(path, model).to(device).eval()
    return model_from_payload(read_checkpoint(path), path, expect, device)


def model_from_payload(payload: dict[str, Any], path: str | Path = "<checkpoint>",
                       expect: dict[str, Any] | MultiExitNet | None = None,
                       device: str | torch.device = "cpu") -> nn.Module:
    """``load_model`` of a checkpoint already read with ``read_checkpoint`` (the file is not read again)."""
    config = payload["model_config"]
    if config.get("kind") in ("attached", "plain"):
        raise CheckpointError(f"checkpoint {path} holds a user network ({config.get('backbone')}); construct it and "
                              "pass it: load_model(path, model=your_network)")
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
        problems = _state_mismatch(payload["model_state"], model.state_dict()) or ["tensors that cannot be copied"]
        raise CheckpointError(f"checkpoint {path}: weights do not fit the model ({'; '.join(problems)})") from None


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


def _state_mismatch(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Which weights are missing, extra or of another shape (a few of each, then a count)."""
    def few(keys: list[str]) -> str:
        return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

    if not isinstance(saved, dict):
        return [f"model_state is a {type(saved).__name__}, not a state dict"]
    missing = [k for k in wanted if k not in saved]
    extra = [k for k in saved if k not in wanted]
    shapes = [f"{k} {tuple(saved[k].shape)} vs {tuple(v.shape)}" for k, v in wanted.items()
              if k in saved and hasattr(v, "shape") and tuple(saved[k].shape) != tuple(v.shape)]
    out = []
    if missing:
        out.append(f"not in the checkpoint: {few(missing)}")
    if extra:
        out.append(f"not in the model: {few(extra)}")
    if shapes:
        out.append(f"shape (checkpoint vs model): {few(shapes)}")
    return out


def load_into(path: str | Path, model: nn.Module) -> nn.Module:
    """Load a checkpoint into a network the caller constructed; returns the model holding the weights.

    ``model`` may be the attached model itself, or the bare backbone of an ``attach_exits``
    checkpoint — its exits (names, head kind, input shape, class count) are re-attached from the
    record — or a plain network. A quantized checkpoint is re-quantized first. Anything that does
    not fit is named: the record's fields, then missing / extra / reshaped weights.
    """
    payload = read_checkpoint(path)
    saved = payload["model_config"]
    if saved.get("kind") == "attached" and not hasattr(model, "num_exits"):
        model = attach_exits(model, saved["exits"], saved["num_classes"], input_shape=saved["input_shape"],
                             heads=saved["heads"])
    have = getattr(model, "config", None) or plain_config(model)
    if saved.get("quant") and not have.get("quant"):
        from .models.quant import quantize_model  # Brevitas only when the checkpoint was quantized

        model = quantize_model(model, saved["quant"])
        have = model.config
    # the class path is only a label (a renamed module still fits); the weights decide
    diffs = [d for d in config_mismatch(saved, have) if not d.startswith("backbone:")]
    if not diffs:
        try:
            model.load_state_dict(payload["model_state"])
            return model
        except RuntimeError:  # Brevitas creates some scales lazily, so only a failed load is a misfit
            diffs = _state_mismatch(payload["model_state"], model.state_dict()) or ["tensors that cannot be copied"]
    label = "" if saved.get("backbone") == have.get("backbone") else \
        f" (saved from {saved.get('backbone')}, loading into {have.get('backbone')})"
    raise CheckpointError(f"checkpoint {path} does not fit this model{label}: " + "; ".join(diffs))
