"""compare_methods: the same training settings under several methods and seeds, one table with intervals and paired tests."""
from __future__ import annotations

import dataclasses
import itertools
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..analysis.stats import paired_test, t_interval
from ..methods import changed_options, comparison_options, method_traits
from ..output import format_table, write_rows_csv
from ..parallel import check_parallel, parallel_map, runs_on_ray
from ..results import exit_columns
from ..run_dir import RunDirectory, read_marker, run_dir_guard
from ..train import NonFiniteLossError, TrainingInterrupted
from ..utils import atomic_write_text, read_json, resolve_device
from .result import StudyResult
from . import zoo
from .zoo import FILE_SETTINGS
from .earlier_runs import check_folders, find_earlier
from .spine import digital_counterpart
from .train import RERUN, TrainRunConfig, adopt_run, continue_flags, finished_run, recorded_start, train_run


@dataclass
class CompareConfig(TrainRunConfig):
    """Settings of a method comparison (experiments/compare_methods.py): the training settings of every run,
    the methods, the seeds, the teacher."""

    KIND = "compare_methods"

    methods: list[str] = field(default_factory=lambda: ["baseline", "dsn", "self_distillation"])
    seeds: list[int] | None = None
    teacher_arch: str | None = None
    teacher_width: float | None = None
    retrain: bool = False  # train every model, even one the zoo holds with exactly these settings
    # a comparison folder each method is fine-tuned from: <init_from>/<its digital counterpart>/s<seed>/best.pt (how a
    # hardware-aware model is made from its digital one, spine.HWA_FINETUNE)
    init_from: str | None = None
    # earlier comparison folders: a run there trained with exactly a run's settings (its start and teacher by
    # content) is adopted into this one, evaluated, not retrained (earlier_runs), its source in its manifest
    reuse: list[str] | None = None
    # how the runs are trained, not what: with 2 or more they are trained side by side as Ray tasks (one torch
    # thread per core each, wxy_hw.parallel), every run as it would be alone
    workers: int = 1
    ray_address: str | None = None


# the settings of the comparison itself; every other field of CompareConfig is a setting of each training run
COMPARISON_ONLY = ("method", "method_options", "methods", "seeds", "teacher_arch", "teacher_width", "seed", "retrain",
                   "init_from", "reuse", "workers", "ray_address")


@dataclass(frozen=True)
class ComparisonPlan:
    """A comparison checked before any training: its settings as written to config.toml (seeds filled in), the
    folder, and the settings every training run shares."""

    config: CompareConfig
    out: Path
    seeds: list[int]
    train_kwargs: dict[str, Any]  # train_run's keywords but method, method_options and seed (progress included)
    wants_teacher: list[str]  # methods that need a teacher (kd, fitnet, at)


# {method: {seed: the run's summary (results.json)}}
Summaries = dict[str, dict[int, dict[str, Any]]]


@dataclass
class ComparisonTable:
    """The comparison as tidy per-seed rows (comparison.csv) and as the table of intervals (comparison.md)."""

    tidy: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    columns: list[str]
    title: str

    def text(self) -> str:
        return format_table(self.rows, self.columns, title=self.title)


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
    ``method_options`` go to every method that accepts them. ``train_kwargs``: the other fields of
    CompareConfig (the training settings) and ``progress``. The same as ``compare_methods_run(...).table``.
    """
    progress = train_kwargs.pop("progress", True)
    conf = CompareConfig.make(methods=list(methods), seeds=list(seeds) if seeds else None, teacher_arch=teacher_arch,
                              teacher_width=teacher_width, method_options=dict(method_options or {}), **train_kwargs)
    return compare_methods_run(conf, out=out, progress=progress).table


def compare_methods_run(config: CompareConfig | None = None, *, out: str | Path | None = None, progress: bool = True,
                        announce: Callable[[str], None] | None = None, on_run: RunHook | None = None,
                        **settings: Any) -> StudyResult:
    """The comparison of ``config`` (or of keyword settings, the fields of CompareConfig) into ``out`` (None:
    runs/compare/<dataset>_<arch>_w<width>); its StudyResult holds the table, the tidy per-seed rows and, in
    ``details["summaries"]``, every run's summary by method and seed. ``announce`` gets one line per run as it
    finishes (default: printed with ``progress``), so an hours-long comparison says how far it is; ``on_run`` gets
    each finished run's method, folder and summary (scripts/train_zoo.py puts it into the zoo at once)."""
    plan = plan_comparison(CompareConfig.make(config, **settings), out, progress)
    # the folder is meant to be re-run: its own earlier comparison (same kind) is continued, anything else refused
    with run_dir_guard(plan.out, resume=True, kind=CompareConfig.KIND):
        run = RunDirectory(plan.out, plan.config.settings(), kind=CompareConfig.KIND)
        plan.config.write(plan.out)
        summaries = train_methods(plan, announce or (_say if progress else None), on_run)
        table = comparison_table(plan, summaries)
        write_rows_csv(plan.out / "comparison.csv", table.tidy)
        text = table.text()
        atomic_write_text(plan.out / "comparison.md", text + "\n")
        run.finish(methods=list(summaries), seeds=plan.seeds)
    return StudyResult(plan.out, text, rows=table.tidy, details={"summaries": summaries})


def check_workers(workers: int, ray_address: str | None, torch_device: str) -> None:
    """--workers / --ray-address for training runs, before any work: never beside a GPU they would leave idle (Ray
    gives its CPU tasks no GPU), and Ray installed (and a cluster that answers)."""
    if (workers > 1 or ray_address) and str(resolve_device(torch_device)).startswith("cuda"):
        flag = f"--workers {workers}" if workers > 1 else f"--ray-address {ray_address}"
        raise ValueError(f"{flag} trains on CPU cores and would leave the GPU idle: train on the GPU in one process "
                         "(drop it), or pass --torch-device cpu")
    check_parallel(workers, ray_address)


def plan_comparison(conf: CompareConfig, out: str | Path | None, progress: bool = True) -> ComparisonPlan:
    """Seeds, methods and teachers checked (a typo fails before hours of training); nothing written."""
    seeds = [int(s) for s in conf.seeds] if conf.seeds else [int(conf.seed)]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds lists a seed twice: {seeds}")
    out = Path(out) if out is not None else Path("runs") / "compare" / f"{conf.dataset}_{conf.arch}_w{conf.width:g}"
    for name in conf.methods:
        method_traits(name)  # fail fast on a typo, before hours of training
    check_workers(conf.workers, conf.ray_address, conf.torch_device)
    wants_teacher = [m for m in conf.methods if method_traits(m)[1]]
    if wants_teacher and conf.teacher is None and conf.teacher_arch is None:
        raise ValueError(f"method(s) {', '.join(wants_teacher)} need a teacher: pass --teacher best.pt, or "
                         "--teacher-arch ARCH to train a baseline teacher per seed on the same budget")
    if conf.teacher is not None and not wants_teacher:  # a file given for nothing (a --teacher-arch trains nothing)
        raise ValueError(f"--teacher is for methods that learn from a teacher (kd, fitnet, at), and none of --methods "
                         f"({' '.join(conf.methods)}) does: drop it, or add such a method")
    if conf.init_from is not None:
        if conf.init is not None:
            raise ValueError("--init-from DIR starts each method from its own model in DIR, --init from one checkpoint: "
                             "give one of them")
        missing = [str(start) for s in seeds for m in conf.methods if not (start := starting_point(conf, m, s)).is_file()]
        if missing:
            raise ValueError(f"--init-from {conf.init_from}: no {missing[0]}"
                             + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                             + "; compare the digital methods into that folder first")
    for key in conf.method_options or {}:
        if "." in key and key.split(".", 1)[0] not in conf.methods:
            raise ValueError(f"--method-arg {key}=...: {key.split('.', 1)[0]} is not one of --methods "
                             f"({' '.join(conf.methods)})")
    if conf.reuse and conf.retrain:
        raise ValueError("--retrain trains every model here, --reuse adopts those an earlier folder trained: give "
                         "one of them")
    check_folders(conf.reuse or [])
    if conf.ray_address:  # a cluster's workers do not start in this folder: every path they get is absolute
        # (links kept, as the run-directory locks name a folder: a resolved --out would be a second key for it)
        out = Path(os.path.abspath(out))
        absolute: dict[str, Any] = {k: os.path.abspath(v) for k in ("data_dir", "teacher", "init", "init_from")
                                    if (v := getattr(conf, k)) is not None}
        absolute["reuse"] = [os.path.abspath(f) for f in conf.reuse] if conf.reuse else None
        conf = dataclasses.replace(conf, **absolute)
    written = dataclasses.replace(conf, methods=list(conf.methods), seeds=seeds, seed=seeds[0],
                                  method_options=dict(conf.method_options or {}),
                                  reuse=list(conf.reuse) if conf.reuse else None)
    train_kwargs = {k: v for k, v in written.settings().items() if k not in COMPARISON_ONLY}
    return ComparisonPlan(written, out, seeds, {**train_kwargs, "progress": progress}, wants_teacher)


# a finished run of a comparison: its method, its folder, its summary (results.json)
RunHook = Callable[[str, Path, dict[str, Any]], None]


@dataclass(frozen=True)
class _Job:
    """One training run of the comparison: what ``_run_or_reuse`` gets."""

    name: str
    run_dir: Path
    options: dict[str, Any]
    train_kwargs: dict[str, Any]
    use_zoo: bool
    reuse: tuple[str, ...] = ()  # earlier comparison folders to adopt this run from (CompareConfig.reuse)
    argv: tuple[str, ...] = field(default_factory=lambda: tuple(sys.argv))  # the command it is part of

    @property
    def seed(self) -> int:
        return int(self.train_kwargs["seed"])


def _train_job(_: None, job: _Job) -> dict[str, Any]:
    sys.argv = list(job.argv)  # a Ray worker's run records the command that asked for it, not Ray's worker script
    return _run_or_reuse(job.name, job.run_dir, job.options, job.train_kwargs, job.use_zoo, job.reuse)


def _say(line: str) -> None:
    print(line, flush=True)


def train_methods(plan: ComparisonPlan, announce: Callable[[str], None] | None = None,
                  on_run: RunHook | None = None) -> Summaries:
    """Every method once per seed (the teachers first, with every run that needs none; then the students), each
    trained or reused, here in order or side by side (``workers``, ``ray_address``: every run is independent of the
    others once its teacher exists); their summaries, and as each run finishes a line to ``announce`` and the run
    to ``on_run``."""
    conf = plan.config
    total = len(plan.seeds) * (len(conf.methods) + (1 if plan.wants_teacher and conf.teacher is None else 0))
    finished = itertools.count(1)  # runs finished so far, over both batches

    def train_all(jobs: list[_Job]) -> list[dict[str, Any]]:
        where = runs_on_ray(conf.workers, conf.ray_address)
        if where and plan.train_kwargs.get("progress", True):  # a task's own progress lines stay in its worker
            print(f"[compare_methods] {len(jobs)} runs as {where}: each trained or reused as alone", flush=True)

        def done(i: int, summary: dict[str, Any]) -> None:
            if announce is not None:
                announce(f"[compare_methods] {next(finished)}/{total} {_finished_line(jobs[i], summary)}")
            if on_run is not None:
                on_run(jobs[i].name, jobs[i].run_dir, summary)
        return parallel_map(_train_job, None, jobs, workers=conf.workers, ray_address=conf.ray_address,
                            on_result=done)

    teachers, first, waiting = comparison_jobs(plan)
    trained = train_all(teachers + first)
    done = {(job.seed, job.name): summary for job, summary in zip(first, trained[len(teachers):])}
    if waiting:  # the students, once every teacher is finished
        done.update({(job.seed, job.name): summary for job, summary in zip(waiting, train_all(waiting))})
    runs = [(seed, name) for seed in plan.seeds for name in conf.methods]
    summaries: Summaries = {}
    for seed, name in runs:
        summaries.setdefault(name, {})[seed] = done[seed, name]
    return summaries


def comparison_jobs(plan: ComparisonPlan) -> tuple[list[_Job], list[_Job], list[_Job]]:
    """The comparison's runs as (its teachers, the runs that learn from none, the students), each student asking for
    its seed's teacher's best.pt in this folder (trained first)."""
    conf = plan.config
    seed_kwargs = {seed: dict(plan.train_kwargs, seed=seed) for seed in plan.seeds}
    reuse = tuple(conf.reuse or ())
    teachers = [_Job("baseline", plan.out / "teacher" / f"s{seed}", {},
                     dict(kwargs, arch=conf.teacher_arch, width=conf.teacher_width or conf.width), not conf.retrain,
                     reuse)
                for seed, kwargs in seed_kwargs.items()] if plan.wants_teacher and conf.teacher is None else []
    for kwargs, teacher in zip(seed_kwargs.values(), teachers):  # each seed's own teacher
        kwargs["teacher"] = teacher.run_dir / "best.pt"

    def job(seed: int, name: str) -> _Job:
        return _Job(name, plan.out / name / f"s{seed}", options_of(conf, name),
                    _run_kwargs(conf, name, seed, seed_kwargs[seed]), not conf.retrain, reuse)
    runs = [(seed, name) for seed in plan.seeds for name in conf.methods]
    # a run that learns from no teacher does not wait for one: it trains beside the teachers (no core left idle
    # while the last teacher trains), the students after them
    waits = {(s, n): bool(teachers) and method_traits(n)[1] for s, n in runs}
    return teachers, [job(*r) for r in runs if not waits[r]], [job(*r) for r in runs if waits[r]]


def job_settings(job: _Job) -> dict[str, Any]:
    """A run's training settings as its run records them (what ``zoo.match`` and ``find_earlier`` compare)."""
    return _run_config(job.name, job.options, job.train_kwargs).settings()


def _run_config(name: str, options: dict[str, Any], train_kwargs: dict[str, Any]) -> TrainRunConfig:
    return TrainRunConfig.make(method=name, method_options=dict(options),
                               **{k: v for k, v in train_kwargs.items() if k != "progress"})


def trained_already(plan: ComparisonPlan) -> tuple[int, int]:
    """How many of the comparison's runs need no training (finished in its folder, or adopted from an earlier
    folder or the zoo, as ``_run_or_reuse`` would), of how many: said before a long comparison starts. A student
    counts when its teacher does (it is then asked with the teacher's adopted file)."""
    teachers, first, students = comparison_jobs(plan)
    ready: dict[Path, Path] = {}  # run folder → the best.pt it will hold without training

    def source(job: _Job) -> Path | None:
        if finished_run(job.run_dir, "compare_methods") is not None:
            return job.run_dir / "best.pt"
        found = adoptable(job.run_dir, job_settings(job), job.use_zoo, job.reuse)
        return found[0] if found is not None else None

    for job in [*teachers, *first]:
        if (path := source(job)) is not None:
            ready[job.run_dir] = path
    for job in students:
        teacher = job.train_kwargs.get("teacher")
        adopted = ready.get(Path(str(teacher)).parent) if teacher else None
        if adopted is not None:  # the teacher of this folder, not trained yet: the file it will be
            job = dataclasses.replace(job, train_kwargs={**job.train_kwargs, "teacher": adopted})
        if (path := source(job)) is not None:
            ready[job.run_dir] = path
    return len(ready), len(teachers) + len(first) + len(students)


def _finished_line(job: _Job, summary: dict[str, Any]) -> str:
    """One finished run: where, its deepest exit's test accuracy, and how it was made."""
    how = ("finished before, reused" if summary.get("reused") else
           f"adopted from {_source(summary['adopted_from'])}" if summary.get("adopted_from") else
           f"trained in {float(summary.get('wall_time_s', 0.0)) / 60:.1f} min")
    return f"{job.run_dir.parent.name}/{job.run_dir.name}: test {summary['test']['exits'][-1]:.2f} % ({how})"


def _source(adopted: dict[str, Any]) -> str:
    return f"the zoo's {adopted['zoo']}" if "zoo" in adopted else str(adopted.get("run", "an earlier run"))


def _run_kwargs(conf: CompareConfig, method: str, seed: int, kwargs: dict[str, Any]) -> dict[str, Any]:
    """One run's training settings: its start with ``init_from``; the seed's teacher only for a method that
    learns from one (a baseline's record names no teacher, so it is the zoo's or an earlier folder's model)."""
    kwargs = dict(kwargs, init=str(starting_point(conf, method, seed))) if conf.init_from else dict(kwargs)
    if not method_traits(method)[1]:
        kwargs.pop("teacher", None)
    return kwargs


def starting_point(conf: CompareConfig, method: str, seed: int) -> Path:
    """With ``init_from``: the checkpoint ``method`` is fine-tuned from for ``seed``."""
    assert conf.init_from is not None
    return Path(conf.init_from) / digital_counterpart(method) / f"s{seed}" / "best.pt"


def options_of(conf: CompareConfig, method: str) -> dict[str, Any]:
    """The method options ``method`` gets in this comparison (``methods.comparison_options``: every one it accepts,
    and those scoped to it, ``METHOD.key``)."""
    return comparison_options(method, conf.method_options)


def comparison_table(plan: ComparisonPlan, summaries: Summaries) -> ComparisonTable:
    """Per method: each exit (and the ensemble) as mean ± 95 % t interval over seeds, and the final exit's
    paired difference to the baseline; tidy rows, one per method, seed and exit."""
    seeds = plan.seeds
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
    c = plan.config
    title = (f"Test accuracy (%) on {c.dataset}, {c.arch} width {c.width:g}, {c.epochs} epochs, "
             f"seeds {', '.join(map(str, seeds))}: mean ± 95 % t interval over seeds (none for one seed); "
             "checkpoints selected on validation; p: paired t-test over seeds")
    return ComparisonTable(tidy, rows, columns, title)


# settings added after runs were first recorded: a manifest without them had the default
ADDED_LATER = {"stem_stride": 1, "exit_stages": None}

def _run_or_reuse(name: str, run_dir: Path, options: dict[str, Any], train_kwargs: dict[str, Any],
                  use_zoo: bool = True, reuse: Sequence[str] = ()) -> dict[str, Any]:
    """A finished run with the same settings is reused, an interrupted one resumed, a different one refused, a
    fine-tune whose start (a student whose teacher) changed since made again; else a run of an earlier folder
    (``reuse``) or the zoo's model (``use_zoo``) trained with exactly these settings is adopted, else the run is trained. The run's summary
    (results.json)."""
    manifest = finished_run(run_dir, "compare_methods")
    if manifest is None and not (run_dir / "last.pt").exists():  # nothing trained here to continue
        adopted = _adopt(name, run_dir, options, train_kwargs, use_zoo, reuse)
        if adopted is not None:
            return adopted
    if manifest is not None:
        saved = manifest.get("config", {})
        keys = ("arch", "width", "heads", "stem_stride", "exit_stages", "dataset", "subset", "epochs", "batch_size", "lr", "weight_decay",
                "schedule", "seed", "augment", "val_fraction")
        diffs = [f"{k}: run has {saved.get(k, ADDED_LATER.get(k))!r}, asked {train_kwargs[k]!r}" for k in keys
                 if train_kwargs.get(k) is not None and saved.get(k, ADDED_LATER.get(k)) != train_kwargs[k]]
        # its method's options as it resolved them: asked otherwise, or a default changed since (auxiliary_adv's
        # merge_bn): another model
        diffs += changed_options(name, options, saved.get("method_options") or {}, asked_too=True)
        if diffs:
            raise FileExistsError(f"{run_dir} holds a finished {name} run with other settings ("
                                  + "; ".join(diffs) + "); pass --out DIR for a new comparison, or move the run aside to train it "
                                  "here again")
        if _start_changed(manifest, train_kwargs) is None:  # finished here before: said so, not "trained"
            return {**read_json(run_dir / "results.json", fix=RERUN), "reused": True}
    begun = manifest or read_marker(run_dir)  # finished, or begun and left unfinished
    changed = _start_changed(begun, train_kwargs) if begun is not None else None
    again = changed is not None
    if again:
        # a fine-tune (--init-from) whose start, or a student whose teacher, was trained again since (say a damaged
        # run set aside): its weights no longer follow from the file it names, so it is made again from the new one
        # (adopted where a first run would be)
        print(f"[compare_methods] {run_dir} began from an earlier {changed}: made again", flush=True)
        adopted = _adopt(name, run_dir, options, train_kwargs, use_zoo, reuse)
        if adopted is not None:
            return adopted
    try:
        flags = {"resume": False, "overwrite": True} if again else continue_flags(run_dir)
        return train_run(method=name, method_options=options, out=run_dir, resume=flags["resume"],
                         overwrite=flags["overwrite"], **train_kwargs).details
    except TrainingInterrupted as exc:  # train's own advice (--resume / --overwrite) is not this command's
        raise TrainingInterrupted(f"{exc.where}; {RERUN}", exc.where) from None
    except NonFiniteLossError as exc:  # the same: this command's remedy is a lower --lr for the whole comparison
        what = str(exc).split("; ", 1)[0]
        raise type(exc)(f"{name} in {run_dir}: {what}; run the comparison again with a lower --lr and a new --out "
                        "(every run of a comparison trains at one learning rate, so a finished run at this one is "
                        "not reused there)") from None


def _start_changed(manifest: dict[str, Any], train_kwargs: dict[str, Any]) -> str | None:
    """The file a run (finished or not) began from (``init``) or learnt from (``teacher``) whose bytes now differ
    from those its manifest recorded, or None (a run recorded before runs recorded it is taken as begun from it)."""
    for key in FILE_SETTINGS:
        path = train_kwargs.get(key)
        if path and Path(str(path)).is_file() and recorded_start(manifest, str(path), key) is False:
            return str(path)
    return None


def _adopt(name: str, run_dir: Path, options: dict[str, Any], train_kwargs: dict[str, Any], use_zoo: bool,
           reuse: Sequence[str]) -> dict[str, Any] | None:
    """The model trained with exactly this run's settings (``adoptable``) made a finished run in ``run_dir``
    (evaluated, not trained; ``studies.train.adopt_run``); None when there is none."""
    conf = _run_config(name, options, train_kwargs)
    found = adoptable(run_dir, conf.settings(), use_zoo, reuse)
    if found is None:
        return None
    path, source, log = found
    if train_kwargs.get("progress", True):
        where = (f"the zoo's {source['zoo']}", "(--retrain trains it)") if "zoo" in source else \
            (str(path.parent), "(--reuse)")
        print(f"[compare_methods] {name} seed {conf.seed}: {where[0]} was trained with exactly these settings; "
              f"evaluated, not retrained {where[1]} → {run_dir}", flush=True)
    return adopt_run(conf, path, run_dir, source, log=log)


def adoptable(run_dir: Path, settings: dict[str, Any], use_zoo: bool,
              reuse: Sequence[str]) -> tuple[Path, dict[str, Any], Path] | None:
    """The checkpoint trained with exactly ``settings``, where it came from and its training log: in an earlier
    folder (``reuse``; first, so that a chain it trained — a teacher and its students, a digital model and its
    fine-tunes — stays one chain) or in the zoo (``use_zoo``); None when neither has it."""
    # the run's place in its comparison (<method>/s<seed>, teacher/s<seed>) is where an earlier comparison has it
    earlier = find_earlier(Path(run_dir.parent.name, run_dir.name), settings, [Path(f) for f in reuse])
    if earlier is not None:
        return earlier[0], earlier[1], earlier[0].with_name("metrics.csv")
    found = zoo.match(settings) if use_zoo else None
    if found is None:
        return None
    model, path = found
    # its training time goes with it: reproduce --plan counts what training every model would take
    seconds = {"train_seconds": model.train_seconds} if model.train_seconds else {}
    return path, {"zoo": model.id, "sha256": model.sha256, **seconds}, path.with_name(f"{model.id}.metrics.csv")
