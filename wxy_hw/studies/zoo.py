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

A second shelf, ``<zoo>/reproduce/`` (same layout, checkout only: not in the wheel), holds the models a
reproduction trains beyond the main job's (``reproduce.py --budget converged``: its teachers and the other
methods, ``scripts/train_zoo.sh --reproduce converged``). ``match`` looks on both shelves, so a reproduction
evaluates them instead of training them again; ``find`` (a study's default model) only on the first.
Each entry records the sha256 of the run checkpoint it was made from (``source_sha256``), and a student
the sha256 of the teacher it learnt from (``teacher_sha256``): a student is the model asked for when its
teacher is that file or the zoo's half-precision copy of it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import CheckpointError, read_checkpoint
from ..methods import changed_defaults, method_traits
from ..run_dir import machine_seconds
from ..utils import atomic_torch_save, atomic_write_text, data_dir, file_sha256, read_hashed, read_json

INDEX = "index.toml"
REPRODUCE_SHELF = "reproduce"  # the reproduction's models: a sub-folder of the zoo with its own index
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
    source_sha256: str = ""  # the training run's full-precision best.pt this entry was made from ("" before recorded)
    teacher_sha256: str = ""  # a student's: the teacher file it learnt from, as its run's manifest recorded it
    train_seconds: float = 0.0  # seconds of its machine its training took (run_dir.machine_seconds; 0: not recorded)

    @property
    def file(self) -> str:
        return f"{self.id}.pt"


def cache_key(dataset: str, arch: str, width: float, epochs: int, subset: int | None, seed: int) -> str:
    """The key of a model trained with these settings: the runs/cache folder a study keeps it in."""
    return f"{dataset}_{arch}_w{width:g}_e{epochs}_n{subset or 'all'}_s{seed}"


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
                         float(m["val_accuracy"]), str(m.get("source_sha256", "")), str(m.get("teacher_sha256", "")),
                         float(m.get("train_seconds", 0.0)))
                for m in data.get("model", [])]
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


def shelves(folder: Path | None = None) -> list[Path]:
    """The zoo's folders ``match`` looks in: the zoo itself, then its reproduce/ shelf where there is one."""
    folder = folder or zoo_dir()
    return [folder] + ([folder / REPRODUCE_SHELF] if (folder / REPRODUCE_SHELF / INDEX).is_file() else [])


def match(settings: dict[str, Any], folder: Path | None = None) -> tuple[ZooModel, Path] | None:
    """The zoo model trained with exactly ``settings`` (a training run's, every ``SAME_MODEL`` key compared; None
    and absent alike mean unset; a starting checkpoint and a teacher by content), on either shelf, and its
    checkpoint, sha256-checked; None when the zoo has none.

    How a study that trains by its own settings (compare_methods, reproduce) reuses the shipped models: by what
    they were trained with, not by a cache name."""
    on_shelves = [(m, shelf) for shelf in shelves(folder) for m in read_index(shelf)]
    everyone = [m for m, _ in on_shelves]
    for m, shelf in on_shelves:
        def same_file(key: str, recorded: Any, asked: Any, m: ZooModel = m, shelf: Path = shelf) -> bool:
            if key == "init":
                return _same_start(recorded, asked, shelf)
            # a student shelved before entries recorded its teacher's sha256 cannot be told apart: never matched
            return _same_teacher(m, asked, everyone) if recorded is None or m.teacher_sha256 else False
        if same_model(config_of(m, shelf), settings, same_file):
            path = find(m.key, m.name, shelf)
            if path is not None and _changed_defaults(path, settings):
                continue  # trained when one of its method's defaults was another: not the model asked for
            if path is not None:
                return m, path
    return None


def _same_teacher(student: ZooModel, asked: Any, models: list[ZooModel]) -> bool:
    """Whether the teacher file ``asked`` is the one the zoo's ``student`` learnt from: the same bytes, or the zoo's
    half-precision copy of them (a model whose ``source_sha256`` is the student's ``teacher_sha256``); a model
    that learnt from no teacher only when none is asked."""
    if not student.teacher_sha256 or asked is None:
        return not student.teacher_sha256 and asked is None
    if not Path(str(asked)).is_file():
        return False
    have = file_sha256(Path(str(asked)))
    copies = {m.sha256 for m in models if m.source_sha256 == student.teacher_sha256}
    return have == student.teacher_sha256 or have in copies


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


def model_differences(recorded: dict[str, Any], asked: dict[str, Any],
                      same_file: Callable[[str, Any, Any], bool] | None = None, *, only_asked: bool = False) -> list[str]:
    """The ``SAME_MODEL`` settings in which a model trained with ``recorded`` differs from the one ``asked`` for, each
    as "key: run has R, asked A". None, absent and empty alike mean unset; a tuple equals the list a TOML / JSON record
    keeps; the teacher of a method that learns from none is ignored. A file the model started from
    (``FILE_SETTINGS``) is compared by ``same_file(key, recorded, asked)`` (by content: paths differ between
    checkouts and folders), or not at all when it is None; ``only_asked`` compares only the keys ``asked`` has."""
    unset: tuple[Any, ...] = (None, {}, [])
    method = asked.get("method")

    def plain(value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value

    out = []
    for key in SAME_MODEL:
        if only_asked and key not in asked:
            continue
        mine, theirs = plain(recorded.get(key)), plain(asked.get(key))
        if key == "teacher" and method is not None and not method_traits(str(method))[1]:
            continue  # a method that learns from no teacher is the same model whatever teacher was named
        if key in FILE_SETTINGS:
            differs = same_file is not None and not same_file(key, mine, theirs)
        else:
            differs = mine != theirs and not (mine in unset and theirs in unset)
        if differs:
            out.append(f"{key}: run has {mine!r}, asked {theirs!r}")
    return out


def same_model(recorded: dict[str, Any], asked: dict[str, Any],
               same_file: Callable[[str, Any, Any], bool]) -> bool:
    """Whether a model trained with the ``recorded`` settings is the one ``asked`` for: no ``model_differences``,
    its starting files compared by ``same_file``."""
    return not model_differences(recorded, asked, same_file)


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
    # a JSON string is a TOML basic string (the same escapes): a quote or backslash in a name stays readable
    return f"{v:.4f}" if isinstance(v, float) else json.dumps(str(v), ensure_ascii=False)


def add(run: Path, key: str, name: str, test_accuracy: float, folder: Path | None = None) -> ZooModel:
    """Put a finished training run into the zoo (half-precision best.pt, config, log) and list it in the index,
    replacing an entry of the same key and name; the entry records the sha256 of the run's best.pt and, for a
    student, of the teacher its manifest says it learnt from."""
    folder = folder or zoo_dir()
    folder.mkdir(parents=True, exist_ok=True)
    content, source = read_hashed(run / "best.pt")
    if content is None:
        raise CheckpointError(f"{run / 'best.pt'} is missing; finish the run before adding it to the zoo")
    payload = read_checkpoint(run / "best.pt", data=True, content=content)
    teacher = teacher_sha256(run)
    manifest = _manifest(run)
    seconds = 0.0 if manifest.get("adopted_from") else round(machine_seconds(manifest), 1)
    model_id = f"{key}__{name.replace('@', '_at_')}"
    with _index_locked(folder):  # the files too: two adds of one model must not list one's sha256 for the other's file
        atomic_torch_save(half_checkpoint(payload), folder / f"{model_id}.pt")
        for source_file, suffix in (("config.toml", "config.toml"), ("metrics.csv", "metrics.csv")):
            if (run / source_file).is_file():
                atomic_write_text(folder / f"{model_id}.{suffix}", (run / source_file).read_text())
        entry = ZooModel(model_id, key, name, file_sha256(folder / f"{model_id}.pt"), float(test_accuracy),
                         float(payload.get("best_val", float("nan"))), str(source), teacher, seconds)
        _write_index([m for m in read_index(folder) if (m.key, m.name) != (key, name)] + [entry], folder)
    return entry


def add_finished(run: Path, folder: Path | None = None, shelf: str = "") -> ZooModel | None:
    """Put a finished training run on a shelf of the zoo in ``folder`` ("": the zoo itself, ``REPRODUCE_SHELF``)
    under its own key and method (as a comparison trains them: a teacher is a baseline of its own architecture),
    with its test accuracy; a student only once the zoo holds the teacher it learnt from (else no study could ever
    match it: one line says to add the teacher first). None when that checkpoint is on the shelf already."""
    folder = folder or zoo_dir()
    fix = "finish the run (or train it again) before adding it to the zoo"
    try:
        manifest, summary = read_json(run / "manifest.json", fix), read_json(run / "results.json", fix)
    except FileNotFoundError as exc:
        raise ValueError(f"{run} is not a finished training run ({Path(str(exc.filename)).name} is missing); "
                         f"{fix}") from None
    conf = manifest.get("config", {})
    if manifest.get("status") != "complete" or not isinstance(conf, dict) or "method" not in conf:
        raise ValueError(f"{run} is not a finished training run; finish it before adding it to the zoo")
    teacher, everyone = teacher_sha256(run), [m for on in shelves(folder) for m in read_index(on)]
    if method_traits(str(conf["method"]))[1] and not teacher:
        raise ValueError(f"{run} recorded no sha256 of its teacher (trained before runs recorded it): no study could "
                         "tell its teacher apart; train it again")
    if teacher and teacher not in {m.source_sha256 for m in everyone} | {m.sha256 for m in everyone}:
        raise ValueError(f"{run} learnt from a teacher the zoo does not hold; add the teacher's run first")
    if file_sha256(run / "best.pt") in {m.source_sha256 for m in read_index(folder / shelf)}:
        return None  # this very checkpoint is on the shelf already: its files stay as they are
    key = cache_key(conf["dataset"], conf["arch"], conf["width"], conf["epochs"], conf.get("subset"), conf["seed"])
    return add(run, key, str(conf["method"]), float(summary["test"]["exits"][-1]), folder / shelf)


def teacher_sha256(run: Path) -> str:
    """The sha256 of the teacher a training run learnt from, as its manifest recorded it ("" for none)."""
    recorded = _manifest(run).get("teacher")
    return str(recorded.get("sha256", "")) if isinstance(recorded, dict) else ""


def _manifest(run: Path) -> dict[str, Any]:
    """A training run's manifest ({} where it does not read back)."""
    try:
        manifest: dict[str, Any] = read_json(run / "manifest.json", fix="")
    except (OSError, ValueError):  # DamagedFileError is a ValueError
        return {}
    return manifest


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


# what read_index needs of every entry: written even when 0 (a model at 0.0 % accuracy is listed, not unreadable)
INDEX_REQUIRED = ("id", "key", "name", "sha256", "test_accuracy", "val_accuracy")


def _write_index(models: list[ZooModel], folder: Path) -> None:
    lines = ["# The model zoo (wxy_hw.studies.zoo): one [[model]] per shipped checkpoint; written by scripts/train_zoo.sh",
             ""]
    for m in sorted(models, key=lambda m: m.id):
        lines += ["[[model]]"] + [f"{k} = {_toml_value(getattr(m, k))}" for k in
                                  ("id", "key", "name", "sha256", "test_accuracy", "val_accuracy", "source_sha256",
                                   "teacher_sha256", "train_seconds")
                                  if k in INDEX_REQUIRED or getattr(m, k) not in ("", 0.0)] + [""]
    atomic_write_text(folder / INDEX, "\n".join(lines))
