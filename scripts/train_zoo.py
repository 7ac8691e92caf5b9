#!/usr/bin/env python
"""Retrain the model zoo from scratch: the default models every study uses, over three seeds.

    scripts/train_zoo.sh                      # all of it (a GPU is used when there is one)
    scripts/train_zoo.sh --seeds 0 --methods baseline --epochs 1 --subset 2000 --zoo /tmp/zoo   # a small try
    scripts/train_zoo.sh --methods self_distillation+hwa --from-zoo   # a new fine-tune recipe on the shipped models
    scripts/train_zoo.sh --table              # the zoo's accuracy table (docs/results.md), trains nothing
    scripts/train_zoo.sh --reproduce converged --workers 2   # the reproduction's other models, onto zoo/reproduce/
    scripts/train_zoo.sh --reproduce converged --finished-in runs/zoo_train/reproduce_converged   # only what finished

Each model trains through the same call a study makes when the model is missing
(``spine.cached_checkpoint``, so the zoo's names are exactly those a study asks for) into
``runs/zoo_train/`` (a run finished there is kept, an interrupted one resumes); the zoo's own models are
not used (``--from-zoo``: a hardware-aware model starts from the shipped digital one). Its best
checkpoint (selected on validation), config and training log then go into the zoo (``studies.zoo.add``:
half-precision weights, sha256 in zoo/index.toml) with its test accuracy on the whole test set.
Hardware-aware methods are fine-tuned through the device's noise (``--device``).

``--reproduce BUDGET`` trains instead what ``reproduce.py --budget BUDGET`` trains in its methods step beyond the
zoo's own models (its teachers and the other methods, exactly as that step trains them, into
``runs/zoo_train/reproduce_<budget>``) and puts each run onto the zoo's reproduce/ shelf as it finishes, so that a
reproduction evaluates them instead of training them (and a long training interrupted keeps what finished);
``--finished-in DIR`` only shelves the runs already finished in such a folder (say while it still trains).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from wxy_hw.cli.vocabulary import OneLineParser
from wxy_hw.analysis.stats import t_interval
from wxy_hw.cli import fail, positive_int, seed_int
from wxy_hw.data import available_datasets
from wxy_hw.hardware.spec import load_device
from wxy_hw.methods import method_traits
from wxy_hw.studies import zoo
from wxy_hw.checkpoint import CheckpointError
from wxy_hw.studies.compare_methods import (CompareConfig, comparison_jobs, compare_methods_run, job_settings,
                                            plan_comparison)
from wxy_hw.studies.earlier_runs import find_earlier
from wxy_hw.studies.reproduce import BUDGETS, Reproduction
from wxy_hw.studies.spine import DEFAULT_BUDGET, DEFAULT_SEEDS, cached_checkpoint, is_hardware_aware
from wxy_hw.utils import resolve_device

METHODS = ("baseline", "self_distillation", "hwa", "self_distillation+hwa")
CACHE = Path("runs/zoo_train")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--device", default="reram", help="device the hardware-aware methods train through")
    parser.add_argument("--epochs", type=int, default=DEFAULT_BUDGET["epochs"])
    parser.add_argument("--subset", type=int, default=None, help="training images (None: all)")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--zoo", type=Path, default=None, help="zoo folder (None: the repository's zoo/)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the training runs go")
    parser.add_argument("--torch-device", default="auto")
    parser.add_argument("--from-zoo", action="store_true",
                        help="start hardware-aware fine-tunes from the zoo's digital models (else trained here too)")
    parser.add_argument("--table", action="store_true", help="print the zoo's accuracy table and train nothing")
    parser.add_argument("--reproduce", metavar="BUDGET", default=None,
                        help="train the models reproduce.py --budget BUDGET trains (methods step) onto zoo/reproduce/")
    parser.add_argument("--finished-in", type=Path, default=None, metavar="DIR",
                        help="with --reproduce: shelve only the runs finished in DIR (a comparison of that budget)")
    parser.add_argument("--workers", type=int, default=1, help="with --reproduce: runs trained side by side")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Every argument checked before anything is written (a user error is one line, exit 2), then train or print."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.zoo is not None:
        os.environ["WXY_ZOO"] = str(args.zoo)  # --from-zoo reads the zoo it writes (and --reproduce plans with it)
    try:
        conf = check_args(args)
        if args.table:
            print_table(args.zoo)
            return 0
        if conf is not None:
            return reproduction_models(args, conf)
        train_main_shelf(args)
    except (Exception, KeyboardInterrupt) as exc:
        return fail(exc)
    return 0


def _checked(flag: str, kind: Any, values: list[Any]) -> None:
    """``values`` of ``flag`` through the CLIs' own rule ``kind`` (positive_int, seed_int): one line if refused."""
    for value in values:
        try:
            kind(str(value))
        except argparse.ArgumentTypeError as exc:
            raise ValueError(f"{flag}: {exc}") from None


def _distinct(flag: str, values: list[Any], example: str) -> None:
    twice = sorted({str(v) for v in values if values.count(v) > 1})
    if twice:
        raise ValueError(f"{flag} lists {', '.join(twice)} more than once: give each once (e.g. {flag} {example})")


def _folder(flag: str, path: Path | None) -> None:
    if path is not None and path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file, not a folder: give a folder (a new one is made)")


def check_args(args: argparse.Namespace) -> CompareConfig | None:
    """Refuse a bad argument in one line before any folder is made; for --reproduce, its comparison's config."""
    _checked("--seeds", seed_int, args.seeds)
    _distinct("--seeds", args.seeds, "0 1 2")
    _checked("--epochs", positive_int, [args.epochs])
    _checked("--subset", positive_int, [] if args.subset is None else [args.subset])
    _checked("--workers", positive_int, [args.workers])
    resolve_device(args.torch_device)  # its own line names --torch-device and the fix
    _folder("--zoo", args.zoo)
    _folder("--cache", args.cache)
    if args.table:
        return None
    for method in args.methods:
        try:
            method_traits(method)
        except ValueError as exc:
            raise ValueError(f"--methods: {exc}") from None
    _distinct("--methods", args.methods, " ".join(METHODS[:2]))
    if args.dataset not in available_datasets():
        raise ValueError(f"--dataset: unknown dataset {args.dataset!r}; give one of {', '.join(available_datasets())}")
    try:
        load_device(args.device)
    except (ValueError, OSError) as exc:
        raise ValueError(f"--device: {exc}") from None
    if args.finished_in is not None and args.reproduce is None:
        raise ValueError("--finished-in DIR shelves the runs of a reproduction's budget: give --reproduce BUDGET too")
    if args.workers != 1 and args.reproduce is None:
        raise ValueError("--workers trains a reproduction's runs side by side: give --reproduce BUDGET too")
    shaped = [flag for flag, given in (("--epochs", args.epochs != DEFAULT_BUDGET["epochs"]),
                                       ("--subset", args.subset is not None),
                                       ("--dataset", args.dataset != "fashion_mnist"), ("--device", args.device != "reram"),
                                       ("--from-zoo", args.from_zoo)) if given]
    if args.reproduce is not None and shaped:
        raise ValueError(f"{' '.join(shaped)}: the main shelf's recipe; --reproduce {args.reproduce} trains its budget's "
                         "own: drop it")
    if args.reproduce is None:
        taught = [m for m in args.methods if method_traits(m)[1]]
        if taught:
            raise ValueError(f"--methods {' '.join(taught)}: learns from a teacher, which the main shelf does not train; "
                             "train it with --reproduce BUDGET (its teachers come with it)")
        return None
    if args.reproduce not in BUDGETS:
        raise ValueError(f"--reproduce {args.reproduce}: no such budget; give one of {', '.join(BUDGETS)}")
    if args.cache == CACHE:
        args.cache = Path("runs") / "zoo_train" / f"reproduce_{args.reproduce}"
        _folder("--cache", args.cache)
    if args.finished_in is not None and not (args.finished_in / "config.toml").is_file():
        raise ValueError(f"--finished-in {args.finished_in}: no comparison there (no config.toml); give the folder "
                         f"of a --reproduce {args.reproduce} training (e.g. {args.cache})")
    return reproduction_config(args.reproduce, args)


def print_table(folder: Path | None) -> None:
    """--table: the main shelf's accuracy table, then the reproduce/ shelf's (if any)."""
    main_shelf = zoo.read_index(folder)
    print(accuracy_table(main_shelf))
    shelf = zoo.read_index((folder or zoo.zoo_dir()) / zoo.REPRODUCE_SHELF)
    if shelf:
        print(f"\nThe {zoo.REPRODUCE_SHELF}/ shelf (a reproduction's teachers and other methods; − baseline: "
              "against the main shelf's baseline of the same key, paired over seeds):\n")
        print(accuracy_table(shelf, reference=main_shelf))


def train_main_shelf(args: argparse.Namespace) -> None:
    """Train (or find finished in --cache) every --methods × --seeds model and put it on the zoo's main shelf."""
    budget = {**DEFAULT_BUDGET, "epochs": args.epochs, "subset": args.subset}
    for seed in args.seeds:
        for method in args.methods:
            started = time.perf_counter()
            best = cached_checkpoint(method, args.dataset, seed=seed, cache_dir=args.cache, progress=False,
                                     hwa_device=args.device, torch_device=args.torch_device,
                                     use_zoo="start" if args.from_zoo and is_hardware_aware(method) else False,
                                     **budget)
            run = best.parent
            results = json.loads((run / "results.json").read_text())
            test = float(results["test"]["exits"][-1])
            entry = zoo.add(run, run.parent.name, run.name, test, folder=args.zoo)
            print(f"[train_zoo] {entry.id}: test {test:.2f} %, val {entry.val_accuracy:.2f} % "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)


def reproduction_config(budget: str, args: argparse.Namespace) -> CompareConfig:
    """The comparison reproduce.py's methods step runs for ``budget`` (--methods and --seeds narrow it only when
    given: the default four methods stand for "every one")."""
    if budget not in BUDGETS:
        raise ValueError(f"--reproduce {budget}: no such budget; give one of {', '.join(BUDGETS)}")
    step = Reproduction(BUDGETS[budget], args.cache, torch_device=args.torch_device).plan.methods.config
    assert isinstance(step, CompareConfig)
    methods = step.methods if list(args.methods) == list(METHODS) else list(args.methods)
    seeds = step.seeds if list(args.seeds) == list(DEFAULT_SEEDS) else list(args.seeds)
    unknown = [m for m in methods if m not in step.methods]
    if unknown:
        raise ValueError(f"--methods: {', '.join(unknown)} not trained by --budget {budget}; give some of "
                         f"{', '.join(step.methods)}")
    return dataclasses.replace(step, methods=list(methods), seeds=list(seeds), workers=args.workers)


def reproduction_models(args: argparse.Namespace, conf: CompareConfig) -> int:
    """--reproduce BUDGET: train the budget's methods step (``conf``) and shelve each run as it finishes, or
    (--finished-in) shelve what a folder of that budget already finished."""
    shelved = 0

    def shelve(name: str, run: Path, summary: dict[str, Any]) -> None:
        nonlocal shelved
        if summary.get("adopted_from"):  # the zoo's own model, or an earlier folder's: shelved already or not ours
            return
        try:
            entry = zoo.add_finished(run, args.zoo, zoo.REPRODUCE_SHELF)
        except (ValueError, CheckpointError, OSError) as exc:  # the run stays in its folder: the others go on
            print(f"[train_zoo] {run} not shelved: {exc}", flush=True)
            return
        if entry is None:
            return  # shelved before (the same run's checkpoint)
        shelved += 1
        print(f"[train_zoo] {zoo.REPRODUCE_SHELF}/{entry.id}: test {entry.test_accuracy:.2f} %, "
              f"val {entry.val_accuracy:.2f} %", flush=True)

    if args.finished_in is None:
        compare_methods_run(conf, out=args.cache, progress=False, announce=print, on_run=shelve)
    else:
        found, planned = finished_runs(args.finished_in, conf)
        print(f"[train_zoo] {len(found)} of the {planned} runs of --reproduce {args.reproduce} are finished in "
              f"{args.finished_in} with its settings", flush=True)
        for run in found:
            shelve(run.parent.name, run, {})
    print(f"[train_zoo] {shelved} model(s) put on the zoo's {zoo.REPRODUCE_SHELF}/ shelf", flush=True)
    return 0


def finished_runs(folder: Path, conf: CompareConfig) -> tuple[list[Path], int]:
    """The runs of ``conf``'s comparison (its methods and seeds, teachers first: a student is shelved after its
    teacher) that ``folder`` finished with exactly the settings that comparison asks (``find_earlier``: every
    setting that shapes the model, a student's teacher by sha256, no resume with other settings, no default changed
    since), and how many runs the comparison has; a run trained otherwise is passed over."""
    plan = plan_comparison(dataclasses.replace(conf, workers=1, reuse=None), folder, progress=False)
    teachers, first, students = comparison_jobs(plan)
    found, jobs = [], [*teachers, *first, *students]
    for job in jobs:
        place = Path(job.run_dir.parent.name, job.run_dir.name)
        earlier = find_earlier(place, job_settings(job), [folder])
        if earlier is not None and "via" not in earlier[1]:  # one it adopted itself is no training of its own
            found.append(earlier[0].parent)
    return found, len(jobs)


def accuracy_table(models: list[zoo.ZooModel], reference: list[zoo.ZooModel] | None = None) -> str:
    """Markdown: per (cache key without seed, method) the test accuracy of each seed, the mean with its 95 % t
    interval over seeds, the difference to the same key's baseline (in ``models`` or ``reference``: the main shelf
    for the reproduce/ shelf), paired over the seeds both have, and the mean validation accuracy."""
    def grouped(ms: list[zoo.ZooModel]) -> dict[tuple[str, str], dict[str, zoo.ZooModel]]:
        groups: dict[tuple[str, str], dict[str, zoo.ZooModel]] = {}
        for m in ms:
            key, _, seed = m.key.rpartition("_s")
            if not key or not seed.isdigit():
                raise ValueError(f"zoo index: model {m.id} has key {m.key!r}, not <key>_s<seed>; restore the index "
                                 "from the repository (git checkout zoo/) or run scripts/train_zoo.sh")
            groups.setdefault((key, m.name), {})[seed] = m
        return groups
    groups, baselines = grouped(models), grouped([*(reference or []), *models])
    if not groups:
        return "(no models)"
    seeds = sorted({s for g in groups.values() for s in g}, key=int)
    lines = ["| key | model | " + " | ".join(f"seed {s}" for s in seeds) +
             " | mean ± 95 % t interval | − baseline | validation (mean) |",
             "|---|---|" + "---|" * len(seeds) + "---|---|---|"]
    for (key, name), by_seed in sorted(groups.items(), key=lambda kv: (kv[0][0], _method_order(kv[0][1]))):
        test = [m.test_accuracy for m in by_seed.values()]
        base = baselines.get((key, "baseline"), {})
        interval = t_interval(test)
        mean, half = interval.mean, interval.half_width
        paired = [m.test_accuracy - base[s].test_accuracy for s, m in by_seed.items() if s in base]
        gap = round(statistics.mean(paired), 2) + 0.0 if paired else float("nan")
        cells = [f"{by_seed[s].test_accuracy:.2f}" if s in by_seed else "—" for s in seeds]
        spread = f"{mean:.2f} ± {half:.2f}" if len(test) > 1 else f"{mean:.2f} (one seed)"
        lines.append(f"| {key} | {name} | " + " | ".join(cells) + f" | {spread} | {gap:+.2f} | "
                     f"{statistics.mean(m.val_accuracy for m in by_seed.values()):.2f} |")
    return "\n".join(lines)


def _method_order(name: str) -> tuple[int, str]:
    """The main job's order (baseline first), then any other method by name."""
    base = name.split("@")[0]
    return (METHODS.index(base) if base in METHODS else len(METHODS), name)


if __name__ == "__main__":
    sys.exit(main())
