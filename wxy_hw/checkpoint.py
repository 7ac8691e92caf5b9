"""Checkpoint format, atomic saving and validated loading (weights_only=True)."""
from __future__ import annotations

import io
import math
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .models.attach import attach_exits, plain_config
from .models.multi_exit import IMAGE_CHANNELS, MAX_IMAGE_SIZE, MAX_WIDTH, MIN_IMAGE_SIZE, MultiExitNet
from .models.rebuild import model_from_config
from .utils import MAX_SEED, atomic_torch_save, few_names

FORMAT = "wxy_hw.checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not match what it is loaded into."""


def save_checkpoint(path: str | Path, model: MultiExitNet, **extra: Any) -> Path:
    """Write model config + weights (+ any extra state) atomically."""
    config = getattr(model, "config", None) or plain_config(model)  # a user network: its class, by name only
    payload = {"format": FORMAT, "model_config": dict(config), "model_state": model.state_dict()}
    payload.update(extra)
    return atomic_torch_save(payload, path)


def read_checkpoint(path: str | Path, *, data: bool = False, resume: bool = False,
                    content: bytes | None = None) -> dict[str, Any]:
    """Load a checkpoint dict safely and validate it as a whole (``validate_payload``), with one clear error for
    every way it can be wrong. ``data``: a study will rebuild its dataset; ``resume``: training will continue it;
    ``content``: the file's bytes, already read (checked by sha256, say), so that what is loaded is what was checked."""
    path = Path(path)
    if content is None and not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; give the path of a best.pt or last.pt "
                              "written by experiments/train.py")
    try:
        with warnings.catch_warnings():  # torch warns before it refuses a raw pickle: the refusal below says it all
            warnings.filterwarnings("ignore", module=r"torch\.")
            payload = torch.load(path if content is None else io.BytesIO(content), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} {_load_problem(exc)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a wxy_hw checkpoint (format {FORMAT!r} expected)")
    validate_payload(payload, path, data=data, resume=resume)
    return payload


# Bounds on the sizes a checkpoint's config may ask for. A file is small, but the model rebuilt from its config is
# allocated before any weight is copied: a width of 1e6 or an image size of 1e6 would ask for gigabytes first.
# Width, image size and channels: the bounds the command line builds models with (models/multi_exit.py).
MAX_CLASSES = 100_000
MAX_INPUT_ELEMENTS = 3 * MAX_IMAGE_SIZE ** 2  # one input of an attached network
# MultiExitNet's config: the required fields and their types, then the optional ones (an unknown field is refused:
# it would reach MultiExitNet(**config) as an unexpected keyword)
NET_FIELDS: dict[str, tuple[type, ...]] = {"arch": (str,), "num_classes": (int,), "in_channels": (int,),
                                           "width": (int, float), "image_size": (int,), "heads": (str,),
                                           "exit_stages": (list, tuple)}
NET_OPTIONAL: dict[str, tuple[type, ...]] = {"stem_stride": (int,), "quant": (dict, type(None))}
DATA_FIELDS: dict[str, tuple[type, ...]] = {"name": (str,), "image_size": (int,), "channels": (int,),
                                            "mean": (list, tuple), "std": (list, tuple)}
# top-level fields that are optional, but used as labels and seeds when present
OPTIONAL_FIELDS: dict[str, tuple[type, ...]] = {"method": (str,), "method_options": (dict,), "train_config": (dict,),
                                                 "epoch": (int,), "best_epoch": (int,), "best_val": (int, float)}
# train_config fields a study reads when present: the seed rebuilds the data split the model was trained on
# (torch.manual_seed, numpy), the others label the manifests that record the model
TRAIN_FIELDS: dict[str, tuple[type, ...]] = {"seed": (int,), "epochs": (int,), "batch_size": (int,),
                                             "lr": (int, float), "weight_decay": (int, float), "schedule": (str,),
                                             "augment": (bool,)}
RESUME_FIELDS: dict[str, tuple[type, ...]] = {"epoch": (int,), "best_epoch": (int,), "best_val": (int, float),
                                              "method_state": (dict,), "optimizer": (dict,), "scheduler": (dict,),
                                              "history": (list,), "torch_rng": (torch.Tensor,)}


def validate_payload(payload: dict[str, Any], path: str | Path = "<checkpoint>", *, data: bool = False,
                     resume: bool = False) -> None:
    """Refuse a checkpoint that is not whole: every problem named by its field, in one CheckpointError line.

    Always: ``model_config`` (fields, types, bounded sizes) and ``model_state`` (a dict of tensors, every
    floating one finite). ``data``: the ``data`` record a study rebuilds the dataset from (name, image
    size, channels, mean, std, agreeing with the model). ``resume``: the optimizer and loop state.
    """
    problems = _config_problems(payload.get("model_config"))
    problems += _state_problems("model_state", payload.get("model_state"), required=True)
    problems += [p for key, types in OPTIONAL_FIELDS.items() if key in payload and (p := _typed(key, payload, types))]
    if isinstance(payload.get("train_config"), dict):
        problems += _train_problems(payload["train_config"])
    if "method_state" in payload:
        problems += _state_problems("method_state", payload["method_state"], required=False)
    if data or "data" in payload:
        problems += _data_problems(payload.get("data"), payload.get("model_config"), required=data)
    if resume:
        problems += [p for key, types in RESUME_FIELDS.items() if (p := _typed(key, payload, types))]
    if problems:
        raise CheckpointError(f"checkpoint {path} cannot be used: {'; '.join(problems)}; "
                              "give a best.pt / last.pt written by experiments/train.py, or train it again")


def _typed(key: str, record: dict[str, Any], types: tuple[type, ...], where: str = "") -> str | None:
    """The problem with ``record[key]`` being absent or of another type (bool is no number here)."""
    name = f"{where}{key}"
    if key not in record:
        return f"{name} is missing"
    value = record[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        wanted = " or ".join("None" if t is type(None) else t.__name__ for t in types)
        return f"{name} is a {type(value).__name__}, not {wanted}"
    return None


def _train_problems(train: dict[str, Any]) -> list[str]:
    """The ``train_config`` fields studies read: each of its type, the seed one a generator takes."""
    where = "train_config."
    problems = [p for key, types in TRAIN_FIELDS.items() if key in train and (p := _typed(key, train, types, where))]
    seed = train.get("seed")
    if not problems and seed is not None and not 0 <= seed <= MAX_SEED:
        problems.append(f"{where}seed is {seed!r}, outside 0..2**63 - 1")
    return problems


def _bounded(name: str, value: Any, low: float, high: float) -> str | None:
    """The problem with a size outside [low, high] (or not finite)."""
    if not (math.isfinite(value) and low <= value <= high):
        return f"{name} is {value!r}, outside {low:g}..{high:g}"
    return None


def _config_problems(config: Any) -> list[str]:
    """What is wrong with ``model_config``: MultiExitNet fields and bounds, or an attached / plain network's record."""
    if not isinstance(config, dict):
        return ["model_config is missing" if config is None else f"model_config is a {type(config).__name__}, not dict"]
    where = "model_config."
    if config.get("kind") in ("attached", "plain"):
        problems = [p for p in [_typed("backbone", config, (str,), where)] if p]
        if config["kind"] == "attached":
            for key, types in (("exits", (list,)), ("num_classes", (int,)), ("input_shape", (list, tuple))):
                problems += [p for p in [_typed(key, config, types, where)] if p]
            if not problems:
                shape = config["input_shape"]
                if not all(isinstance(s, int) and s > 0 for s in shape) or math.prod(shape) > MAX_INPUT_ELEMENTS:
                    problems.append(f"{where}input_shape is {shape!r}, not positive sizes of at most "
                                    f"{MAX_INPUT_ELEMENTS} elements")
                problems += [p for p in [_bounded(f"{where}num_classes", config["num_classes"], 1, MAX_CLASSES)] if p]
        return problems
    problems = [p for key, types in NET_FIELDS.items() if (p := _typed(key, config, types, where))]
    problems += [p for key, types in NET_OPTIONAL.items() if key in config and (p := _typed(key, config, types, where))]
    unknown = sorted(set(config) - set(NET_FIELDS) - set(NET_OPTIONAL))
    if unknown:
        problems.append(f"model_config has unknown field(s) {', '.join(unknown)} (written by another version?)")
    if problems:
        return problems
    bounds = (("image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE), ("num_classes", 2, MAX_CLASSES))
    problems += [p for key, low, high in bounds if (p := _bounded(f"{where}{key}", config[key], low, high))]
    if not (math.isfinite(config["width"]) and 0 < config["width"] <= MAX_WIDTH):
        problems.append(f"{where}width is {config['width']!r}, outside (0, {MAX_WIDTH:g}]")
    if config["in_channels"] not in IMAGE_CHANNELS:
        problems.append(f"{where}in_channels is {config['in_channels']!r}, not 1 or 3")
    if config.get("stem_stride", 1) not in (1, 2):
        problems.append(f"{where}stem_stride is {config['stem_stride']!r}, not 1 or 2")
    if not config["exit_stages"] or not all(isinstance(s, int) and 0 <= s < 4 for s in config["exit_stages"]):
        problems.append(f"{where}exit_stages is {config['exit_stages']!r}, not stage indices 0..3")
    return problems


def _state_problems(name: str, state: Any, required: bool) -> list[str]:
    """A state dict must map names to tensors, every floating tensor finite (NaN weights score as a constant guess)."""
    if state is None and required:
        return [f"{name} is missing"]
    if not isinstance(state, dict):
        return [f"{name} is a {type(state).__name__}, not a dict of tensors"]
    # a module's get_extra_state() is the one non-tensor entry a state dict may hold (torch's own convention)
    odd = [k for k, v in state.items() if not isinstance(v, torch.Tensor) and not str(k).endswith("_extra_state")]
    if odd:
        return [f"{name} holds non-tensors ({few_names(str(k) for k in odd)})"]
    bad = [str(k) for k, v in state.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    return [f"{name} holds NaN or infinite values in {few_names(bad)}"] if bad else []


def _data_problems(info: Any, config: Any, required: bool) -> list[str]:
    """The ``data`` record: the fields a study rebuilds the dataset and normalisation from, agreeing with the model."""
    if not isinstance(info, dict):
        return ["data is missing" if info is None else f"data is a {type(info).__name__}, not dict"]
    where = "data."
    fields = {k: t for k, t in DATA_FIELDS.items() if required or k in info}
    problems = [p for key, types in fields.items() if (p := _typed(key, info, types, where))]
    if problems:
        return problems
    channels = info.get("channels")
    if "channels" in info and channels not in IMAGE_CHANNELS:
        problems.append(f"{where}channels is {channels!r}, not 1 or 3")
    if "image_size" in info:
        problems += [p for p in [_bounded(f"{where}image_size", info["image_size"], MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)] if p]
    subset, fraction = info.get("train_subset"), info.get("val_fraction", 0.1)
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
        problems.append(f"{where}train_subset is {subset!r}, not a positive whole number or null")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        problems.append(f"{where}val_fraction is {fraction!r}, not a number in [0, 1)")
    for key in ("mean", "std"):
        values = info.get(key)
        if values is None:
            continue
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
        if not numbers or (key == "std" and not all(v > 0 for v in values)):
            problems.append(f"{where}{key} is {values!r}, not finite numbers{' > 0' if key == 'std' else ''}")
        elif isinstance(channels, int) and len(values) != channels:
            problems.append(f"{where}{key} has {len(values)} values for {channels} channel(s)")
    if isinstance(config, dict) and config.get("kind") is None:  # a MultiExitNet must fit the data it was trained on
        for data_key, config_key in (("channels", "in_channels"), ("image_size", "image_size"),
                                     ("num_classes", "num_classes")):
            if data_key in info and config_key in config and info[data_key] != config[config_key]:
                problems.append(f"{where}{data_key} is {info[data_key]!r} but model_config.{config_key} is "
                                f"{config[config_key]!r}")
    return problems


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
                       device: str | torch.device = "cpu") -> MultiExitNet:
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
    if not isinstance(saved, dict):
        return [f"model_state is a {type(saved).__name__}, not a state dict"]
    missing = [k for k in wanted if k not in saved]
    extra = [k for k in saved if k not in wanted]
    shapes = [f"{k} {tuple(saved[k].shape)} vs {tuple(v.shape)}" for k, v in wanted.items()
              if k in saved and hasattr(v, "shape") and tuple(saved[k].shape) != tuple(v.shape)]
    out = []
    if missing:
        out.append(f"not in the checkpoint: {few_names(missing)}")
    if extra:
        out.append(f"not in the model: {few_names(extra)}")
    if shapes:
        out.append(f"shape (checkpoint vs model): {few_names(shapes)}")
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
