#!/usr/bin/env python
"""Retrain the model zoo from scratch: the default models every study uses, over three seeds.

    scripts/train_zoo.sh                      # all of it (a GPU is used when there is one)
    scripts/train_zoo.sh --seeds 0 --methods baseline --epochs 1 --subset 2000 --zoo /tmp/zoo   # a small try
    scripts/train_zoo.sh --methods self_distillation+hwa --from-zoo   # a new fine-tune recipe on the shipped models
    scripts/train_zoo.sh --table              # the zoo's accuracy table (docs/results.md), trains nothing

Each model trains through the same call a study makes when the model is missing
(``spine.cached_checkpoint``, so the zoo's names are exactly those a study asks for) into
``runs/zoo_train/`` (a run finished there is kept, an interrupted one resumes); the zoo's own models are
not used (``--from-zoo``: a hardware-aware model starts from the shipped digital one). Its best
checkpoint (selected on validation), config and training log then go into the zoo (``studies.zoo.add``:
half-precision weights, sha256 in zoo/index.toml) with its test accuracy on the whole test set.
Hardware-aware methods are fine-tuned through the device's noise (``--device``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from wxy_hw.analysis.stats import t_interval
from wxy_hw.studies import zoo
from wxy_hw.studies.spine import DEFAULT_BUDGET, DEFAULT_SEEDS, cached_checkpoint, is_hardware_aware

METHODS = ("baseline", "self_distillation", "hwa", "self_distillation+hwa")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--device", default="reram", help="device the hardware-aware methods train through")
    parser.add_argument("--epochs", type=int, default=DEFAULT_BUDGET["epochs"])
    parser.add_argument("--subset", type=int, default=None, help="training images (None: all)")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--zoo", type=Path, default=None, help="zoo folder (None: the repository's zoo/)")
    parser.add_argument("--cache", type=Path, default=Path("runs/zoo_train"), help="where the training runs go")
    parser.add_argument("--torch-device", default="auto")
    parser.add_argument("--from-zoo", action="store_true",
                        help="start hardware-aware fine-tunes from the zoo's digital models (else trained here too)")
    parser.add_argument("--table", action="store_true", help="print the zoo's accuracy table and train nothing")
    args = parser.parse_args(argv)
    if args.zoo is not None:
        os.environ["WXY_ZOO"] = str(args.zoo)  # --from-zoo reads the zoo it writes
    if args.table:
        print(accuracy_table(zoo.read_index(args.zoo)))
        return 0
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
    return 0


def accuracy_table(models: list[zoo.ZooModel]) -> str:
    """Markdown: per (cache key without seed, method) the test accuracy of each seed, the mean with its 95 % t
    interval over seeds, the difference to the same key's baseline and the mean validation accuracy."""
    groups: dict[tuple[str, str], dict[str, zoo.ZooModel]] = {}
    for m in models:
        key, seed = m.key.rsplit("_s", 1)
        groups.setdefault((key, m.name), {})[seed] = m
    seeds = sorted({s for g in groups.values() for s in g}, key=int)
    lines = ["| key | model | " + " | ".join(f"seed {s}" for s in seeds) +
             " | mean ± 95 % t interval | − baseline | validation (mean) |",
             "|---|---|" + "---|" * len(seeds) + "---|---|---|"]
    for (key, name), by_seed in sorted(groups.items(), key=lambda kv: (kv[0][0], _method_order(kv[0][1]))):
        test = [m.test_accuracy for m in by_seed.values()]
        base = groups.get((key, "baseline"), {})
        interval = t_interval(test)
        mean, half = interval.mean, interval.half_width
        gap = round(mean - statistics.mean(m.test_accuracy for m in base.values()), 2) + 0.0 if base else float("nan")
        cells = [f"{by_seed[s].test_accuracy:.2f}" if s in by_seed else "—" for s in seeds]
        lines.append(f"| {key} | {name} | " + " | ".join(cells) + f" | {mean:.2f} ± {half:.2f} | {gap:+.2f} | "
                     f"{statistics.mean(m.val_accuracy for m in by_seed.values()):.2f} |")
    return "\n".join(lines)


def _method_order(name: str) -> tuple[int, str]:
    """The main job's order (baseline first), then any other method by name."""
    base = name.split("@")[0]
    return (METHODS.index(base) if base in METHODS else len(METHODS), name)


if __name__ == "__main__":
    sys.exit(main())
