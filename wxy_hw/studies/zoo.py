"""The model zoo: trained default models that come with wxy_hw, so a study uses them instead of training.

The zoo is a flat folder (top-level ``zoo/`` in a checkout, ``wxy_hw/zoo`` in a wheel; ``$WXY_ZOO``
overrides both) holding, per model, ``<id>.pt`` (the best checkpoint, weights in half precision,
no optimizer state), ``<id>.config.toml`` (the training run's settings) and ``<id>.metrics.csv``
(its training log), and one ``index.toml``: per model its id, the cache key and name it stands
for (the same names as ``runs/cache``), its test and validation accuracy and the sha256 of its
``.pt``. A study asks for a default model by cache key and name (``spine.cached_checkpoint``): a
trained run in ``runs/cache`` first, then the zoo, else it trains one. A zoo file whose sha256
differs from the index is never loaded (one line says so, and the model is trained instead).
``scripts/train_zoo.sh`` retrains the whole zoo from scratch.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import CheckpointError, read_checkpoint
from ..methods import changed_defaults, method_traits
from ..utils import atomic_torch_save, atomic_write_text, data_dir, file_sha256

INDEX = "index.toml"
INDEX_LOCK = ".index.lock"  # held while the index is read, changed and written back (never shipped)
# what a study needs from a checkpoint; optimizer, scheduler, RNG and method state stay in the training run
KEPT_FIELDS = ("format", "model_config", "model_state", "method", "method_options", "epoch", "data", "train_config",
               "best_epoch", "best_val")


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo, as its index describes it."""

    id: str
    key: str  # the runs/cache folder it stands for: <dataset>_<arch>_w<width>_e<epochs>_n<subset>_s<seed>
    name: str  # the method's folder under it (e.g. self_distillation, hwa@reram)
    sha256: str
    test_accuracy: float
    val_accuracy: float

    @property
    def file(self) -> str:
        return f"{self.id}.pt"


def zoo_dir() -> Path:
    """Where the zoo is: $WXY_ZOO, else the checkout's top-level zoo/, else the installed package's."""
    if os.environ.get("WXY_ZOO"):
        return Path(os.environ["WXY_ZOO"])
    return data_dir("zoo")


def read_index(folder: Path | None = None) -> list[ZooModel]:
    """The zoo's models (none when it has no index); a malformed index is refused in one line."""
    path = (folder or zoo_dir()) / INDEX
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text())
        return [ZooModel(str(m["id"]), str(m["key"]), str(m["name"]), str(m["sha256"]), float(m["test_accuracy"]),
                         float(m["val_accuracy"])) for m in data.get("model", [])]
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"zoo index {path} cannot be read ({exc}); restore it from the repository "
                         "(git checkout zoo/) or run scripts/train_zoo.sh") from None


def find(key: str, name: str, folder: Path | None = None) -> Path | None:
    """The zoo's checkpoint for (cache key, method name), checked against its sha256; None when absent or changed."""
    folder = folder or zoo_dir()
    for m in read_index(folder):
        if (m.key, m.name) == (key, name):
            path = folder / m.file
            if not path.is_file():
                print(f"[wxy_hw] zoo model {m.file} is listed but missing: training it instead", flush=True)
                return None
            if file_sha256(path) != m.sha256:
                print(f"[wxy_hw] zoo model {m.file} does not match its sha256 in {INDEX}: not loaded, training it "
                      "instead (git checkout zoo/ restores it)", flush=True)
                return None
            return path
    return None


# the training settings that make two runs the same model; where and how fast it ran (data_dir, torch_device,
# grad_norms_every) do not change the model
SAME_MODEL = ("method", "method_options", "arch", "width", "heads", "stem_stride", "exit_stages", "dataset", "subset",
              "val_fraction", "image_size", "channels", "epochs", "batch_size", "lr", "weight_decay", "schedule", "seed",
              "augment", "teacher", "init", "max_steps_per_epoch")


def config_of(model: ZooModel, folder: Path | None = None) -> dict[str, Any]:
    """The training settings the zoo model was trained with (its ``config.toml``; unset settings absent)."""
    path = (folder or zoo_dir()) / f"{model.id}.config.toml"
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"zoo config {path} cannot be read ({exc}); restore it from the repository "
                         "(git checkout zoo/) or run scripts/train_zoo.sh") from None


def match(settings: dict[str, Any], folder: Path | None = None) -> tuple[ZooModel, Path] | None:
    """The zoo model trained with exactly ``settings`` (a training run's, every ``SAME_MODEL`` key compared; None
    and absent alike mean unset; a starting checkpoint by content) and its checkpoint, sha256-checked; None when the
    zoo has none.

    How a study that trains by its own settings (compare_methods, reproduce) reuses the shipped models: by what
    they were trained with, not by a cache name."""
    folder = folder or zoo_dir()
    for m in read_index(folder):
        # a start by content; a teacher never (the zoo records no teacher's sha256, and ships no student)
        if same_model(config_of(m, folder), settings,
                      lambda key, recorded, asked: _same_start(recorded, asked, folder) if key == "init"
                      else recorded is None and asked is None):
            path = find(m.key, m.name, folder)
            if path is not None and _changed_defaults(path, settings):
                continue  # trained when one of its method's defaults was another: not the model asked for
            return (m, path) if path is not None else None
    return None


def _changed_defaults(path: Path, settings: dict[str, Any]) -> list[str]:
    """What the zoo checkpoint's method took by default and would now take otherwise (``methods.changed_defaults``);
    nothing for a model saved before checkpoints recorded their method's options (then its asked options alone
    tell it apart)."""
    try:
        recorded = read_checkpoint(path).get("method_options")
    except CheckpointError:  # not for this check to refuse: a study loading it says what is wrong, in one line
        return []
    if not isinstance(recorded, dict):
        return []
    return changed_defaults(str(settings["method"]), settings.get("method_options") or {}, recorded)


# the settings naming a file a run started from: the same model only if it is the same file by content
FILE_SETTINGS = ("init", "teacher")


def same_model(recorded: dict[str, Any], asked: dict[str, Any],
               same_file: Callable[[str, Any, Any], bool]) -> bool:
    """Whether a model trained with the ``recorded`` settings is the one ``asked`` for: every ``SAME_MODEL`` key
    equal (None, absent and empty alike mean unset), a file it started from (``FILE_SETTINGS``) the same by
    ``same_file(key, recorded, asked)`` (by content: paths differ between checkouts and folders)."""
    unset: tuple[Any, ...] = (None, {})
    method = asked.get("method")
    for key in SAME_MODEL:
        mine, theirs = recorded.get(key), asked.get(key)
        if key == "teacher" and method is not None and not method_traits(str(method))[1]:
            continue  # a method that learns from no teacher is the same model whatever teacher was named
        if key in FILE_SETTINGS:
            if not same_file(key, mine, theirs):
                return False
        elif mine != theirs and not (mine in unset and theirs in unset):
            return False
    return True


def _same_start(recorded: str | None, asked: str | None, folder: Path) -> bool:
    """Whether a zoo model's starting checkpoint (recorded relative to the checkout that trained it, e.g.
    ``zoo/<id>.pt``) is the one asked for: the same file by content (a fine-tune of the zoo's own digital model,
    wherever that model was copied to), or neither has one."""
    if recorded is None or asked is None:
        return recorded is None and asked is None
    here = next((p for p in (Path(recorded), folder / Path(recorded).name) if p.is_file()), None)
    return here is not None and Path(asked).is_file() and file_sha256(here) == file_sha256(Path(asked))


def half_checkpoint(payload: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint payload cut to what a study reads, its floating-point weights in half precision."""
    out = {k: payload[k] for k in KEPT_FIELDS if k in payload}
    out["model_state"] = {k: (v.half() if torch.is_floating_point(v) else v) for k, v in payload["model_state"].items()}
    return out


def _toml_value(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else f'"{v}"'


def add(run: Path, key: str, name: str, test_accuracy: float, folder: Path | None = None) -> ZooModel:
    """Put a finished training run into the zoo (half-precision best.pt, config, log) and list it in the index,
    replacing an entry of the same key and name."""
    folder = folder or zoo_dir()
    folder.mkdir(parents=True, exist_ok=True)
    payload = read_checkpoint(run / "best.pt", data=True)
    model_id = f"{key}__{name.replace('@', '_at_')}"
    with _index_locked(folder):  # the files too: two adds of one model must not list one's sha256 for the other's file
        atomic_torch_save(half_checkpoint(payload), folder / f"{model_id}.pt")
        for source, suffix in (("config.toml", "config.toml"), ("metrics.csv", "metrics.csv")):
            if (run / source).is_file():
                atomic_write_text(folder / f"{model_id}.{suffix}", (run / source).read_text())
        entry = ZooModel(model_id, key, name, file_sha256(folder / f"{model_id}.pt"), float(test_accuracy),
                         float(payload.get("best_val", float("nan"))))
        _write_index([m for m in read_index(folder) if (m.key, m.name) != (key, name)] + [entry], folder)
    return entry


def remove(name: str, folder: Path | None = None) -> list[str]:
    """Take every model of method folder ``name`` (e.g. a superseded recipe's ``hwa@reram``) out of the zoo: the
    index first, then its files (an interrupted removal leaves unlisted files, never a listed model without one)."""
    folder = folder or zoo_dir()
    if not folder.is_dir():
        return []
    with _index_locked(folder):  # the files too: an add of the same model in between must keep its new files
        models = read_index(folder)
        gone = [m for m in models if m.name == name]
        _write_index([m for m in models if m.name != name], folder)
        for m in gone:
            for suffix in ("pt", "config.toml", "metrics.csv"):
                (folder / f"{m.id}.{suffix}").unlink(missing_ok=True)
    return [m.id for m in gone]


@contextlib.contextmanager
def _index_locked(folder: Path) -> Iterator[None]:
    """Hold the zoo's index lock: two train_zoo runs (say one per device) that finish a model at the same moment
    each add theirs, instead of the later write dropping the other's entry. The kernel drops it if we die."""
    fd = os.open(folder / INDEX_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_index(models: list[ZooModel], folder: Path) -> None:
    lines = ["# The model zoo (wxy_hw.studies.zoo): one [[model]] per shipped checkpoint; written by scripts/train_zoo.sh",
             ""]
    for m in sorted(models, key=lambda m: m.id):
        lines += ["[[model]]"] + [f"{k} = {_toml_value(getattr(m, k))}" for k in
                                  ("id", "key", "name", "sha256", "test_accuracy", "val_accuracy")] + [""]
    atomic_write_text(folder / INDEX, "\n".join(lines))
