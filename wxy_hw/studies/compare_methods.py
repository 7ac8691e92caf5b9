"""compare_methods: the same training settings under several methods and seeds, one table with intervals and paired tests."""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..analysis.stats import paired_test, t_interval
from ..methods import method_class, method_traits
from ..output import format_table, write_rows_csv
from ..results import exit_columns
from ..run_dir import RunDirectory, run_dir_guard
from ..train import NonFiniteLossError, TrainingInterrupted
from ..utils import atomic_write_text, read_json
from .train import RERUN, TrainRunConfig, continue_flags, finished_run, train_run

@dataclass
class CompareConfig(TrainRunConfig):
    """Settings of a method comparison (experiments/compare_methods.py): the training settings of every run,
    the methods, the seeds, the teacher."""

    KIND = "compare_methods"

    methods: list[str] = field(default_factory=lambda: ["baseline", "dsn", "self_distillation"])
    seeds: list[int] | None = None
    teacher_arch: str | None = None
    teacher_width: float | None = None


def compare_methods(*, methods: list[str], seeds: Sequence[int] | None = None, out: str | Path | None = None,
                    method_options: dict[str, Any] | None = None, teacher_arch: str | None = None,
                    teacher_width: float | None = None, **train_kwargs: Any) -> str:
    """Train each method for each seed on the same budget; return the table with 95 % intervals.

    Runs live in ``out/<method>/s<seed>``: a completed run is reused, an interrupted one resumed, a damaged
    one (a file that does not read back) set aside and trained again, so the command can be re-run after a
    crash or to add a method or a seed. Each cell is the
    mean over seeds ± the 95 % t interval (over seeds); the last column is the paired difference
    of the final exit to the baseline over the same seeds, with its two-sided p-value. Methods
    that need a teacher (kd, fitnet, at) get ``teacher`` or, with ``teacher_arch``, a baseline
    teacher trained per seed into ``out/teacher/s<seed>`` on the same budget.
    ``method_options`` go to every method that accepts them.
    """
    seeds = [int(s) for s in seeds] if seeds else [int(train_kwargs.get("seed", 0))]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds lists a seed twice: {seeds}")
    train_kwargs = {k: v for k, v in train_kwargs.items() if k != "seed"}
    dataset, arch = train_kwargs.get("dataset", "fashion_mnist"), train_kwargs.get("arch", "resnet18")
    width = train_kwargs.get("width", 0.25)
    out = Path(out) if out is not None else Path("runs") / "compare" / f"{dataset}_{arch}_w{width:g}"
    for name in methods:
        method_traits(name)  # fail fast on a typo, before hours of training
    wants_teacher = [m for m in methods if method_traits(m)[1]]
    if wants_teacher and train_kwargs.get("teacher") is None and teacher_arch is None:
        raise ValueError(f"method(s) {', '.join(wants_teacher)} need a teacher: pass --teacher best.pt, or "
                         "--teacher-arch ARCH to train a baseline teacher per seed on the same budget")
    settings = {k: v for k, v in train_kwargs.items() if k != "progress"}
    conf = CompareConfig.make(methods=list(methods), seeds=seeds, teacher_arch=teacher_arch, teacher_width=teacher_width,
                              method_options=dict(method_options or {}), seed=seeds[0], **settings)
    # the folder is meant to be re-run: its own earlier comparison (same kind) is continued, anything else refused
    with run_dir_guard(out, resume=True, kind=CompareConfig.KIND):
        run = RunDirectory(out, conf.settings(), kind=CompareConfig.KIND)
        conf.write(out)
        summaries: dict[str, dict[int, dict[str, Any]]] = {}
        for seed in seeds:
            kwargs = dict(train_kwargs, seed=seed)
            if wants_teacher and kwargs.get("teacher") is None:
                t_kwargs = dict(kwargs, arch=teacher_arch, width=teacher_width or width)
                kwargs["teacher"] = Path(_run_or_reuse("baseline", out / "teacher" / f"s{seed}", {}, t_kwargs)["run_dir"]) \
                    / "best.pt"
            for name in methods:
                accepted = {p for part in name.split("+")
                            for p in inspect.signature(method_class(part).__init__).parameters}
                opts = {k: v for k, v in (method_options or {}).items() if k in accepted}
                summaries.setdefault(name, {})[seed] = _run_or_reuse(name, out / name / f"s{seed}", opts, kwargs)

        n_exits = max(len(by_seed[seeds[0]]["test"]["exits"]) for by_seed in summaries.values())
        exit_cols = exit_columns(n_exits) if n_exits > 1 else ["Final"]
        base = {(s, 0): summaries["baseline"][s]["test"]["exits"][-1] for s in seeds} if "baseline" in summaries else None
        tidy, rows = [], []
        for name, by_seed in summaries.items():
            n = len(by_seed[seeds[0]]["test"]["exits"])
            cells: dict[str, Any] = {"Model": name}
            # A single-exit method's one classifier is reported under the deepest exit's column.
            for k, col in enumerate(exit_cols if n > 1 else exit_cols[-1:]):
                acc = [by_seed[s]["test"]["exits"][k] for s in seeds]
                cells[col] = str(t_interval(acc))
                tidy += [dict(method=name, seed=s, exit=str(k + 1) if n > 1 else str(n_exits), accuracy=a)
                         for s, a in zip(seeds, acc)]
            if n > 1:
                ens = [by_seed[s]["test"]["ensemble"] for s in seeds]
                cells["Ensemble"] = str(t_interval(ens))
                tidy += [dict(method=name, seed=s, exit="ensemble", accuracy=a) for s, a in zip(seeds, ens)]
            if base is not None and name != "baseline":
                test = paired_test({(s, 0): by_seed[s]["test"]["exits"][-1] for s in seeds}, base)
                p = "n/a" if math.isnan(test.p_value) else f"{test.p_value:.3f}"
                cells["final − baseline (p)"] = f"{test.difference} ({p})"
            rows.append(cells)
        columns = ["Model", *exit_cols, "Ensemble"]
        if base is not None and len(summaries) > 1:
            columns.append("final − baseline (p)")
        title = (f"Test accuracy (%) on {dataset}, {arch} width {width:g}, {train_kwargs.get('epochs', 5)} epochs, "
                 f"seeds {', '.join(map(str, seeds))}: mean ± 95 % t interval over seeds (none for one seed); "
                 "checkpoints selected on validation; p: paired t-test over seeds")
        table = format_table(rows, columns, title=title)
        write_rows_csv(out / "comparison.csv", tidy)
        atomic_write_text(out / "comparison.md", table + "\n")
        run.finish(methods=list(summaries), seeds=seeds)
    return table


# settings added after runs were first recorded: a manifest without them had the default
ADDED_LATER = {"stem_stride": 1, "exit_stages": None}

def _run_or_reuse(name: str, run_dir: Path, options: dict[str, Any], train_kwargs: dict[str, Any]) -> dict[str, Any]:
    """A finished run with the same settings is reused, an interrupted one resumed, a different one refused."""
    manifest = finished_run(run_dir, "compare_methods")
    if manifest is not None:
        saved = manifest.get("config", {})
        keys = ("arch", "width", "heads", "stem_stride", "exit_stages", "dataset", "subset", "epochs", "batch_size", "lr", "weight_decay",
                "schedule", "seed", "augment", "val_fraction")
        diffs = [f"{k}: run has {saved.get(k, ADDED_LATER.get(k))!r}, asked {train_kwargs[k]!r}" for k in keys
                 if train_kwargs.get(k) is not None and saved.get(k, ADDED_LATER.get(k)) != train_kwargs[k]]
        if diffs:
            raise FileExistsError(f"{run_dir} holds a finished {name} run with other settings ("
                                  + "; ".join(diffs) + "); pass --out DIR for a new comparison")
        return read_json(run_dir / "results.json", fix=RERUN)
    try:
        return train_run(method=name, method_options=options, out=run_dir, **continue_flags(run_dir), **train_kwargs)
    except TrainingInterrupted as exc:  # train's own advice (--resume / --overwrite) is not this command's
        raise TrainingInterrupted(f"{exc.where}; {RERUN}", exc.where) from None
    except NonFiniteLossError as exc:  # the same: this command's remedy is a rerun with a lower --lr
        what = str(exc).split("; ", 1)[0]
        raise type(exc)(f"{name} in {run_dir}: {what}; re-run the same command with a lower --lr (runs that diverged "
                        "continue from their last good checkpoint or start again; finished ones are reused)") from None


