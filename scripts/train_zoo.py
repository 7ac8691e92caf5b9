#!/usr/bin/env python
"""Retrain the model zoo from scratch: the default models every study uses, over three seeds.

    scripts/train_zoo.sh                      # all of it (a GPU is used when there is one)
    scripts/train_zoo.sh --seeds 0 --methods baseline --epochs 1 --subset 2000 --zoo /tmp/zoo   # a small try

Each model trains through the same call a study makes when the model is missing
(``spine.cached_checkpoint``, so the zoo's names are exactly those a study asks for) into
``runs/zoo_train/``; its best checkpoint (selected on validation), config and training log then go
into the zoo (``studies.zoo.add``: half-precision weights, sha256 in zoo/index.toml) with its test
accuracy on the whole test set. Hardware-aware methods train through the device's noise (``--device``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from wxy_hw.studies import zoo
from wxy_hw.studies.spine import DEFAULT_BUDGET, DEFAULT_SEEDS, cached_checkpoint

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
    args = parser.parse_args(argv)
    budget = {**DEFAULT_BUDGET, "epochs": args.epochs, "subset": args.subset}
    for seed in args.seeds:
        for method in args.methods:
            started = time.perf_counter()
            best = cached_checkpoint(method, args.dataset, seed=seed, cache_dir=args.cache, progress=False,
                                     hwa_device=args.device, torch_device=args.torch_device, **budget)
            run = best.parent
            results = json.loads((run / "results.json").read_text())
            test = float(results["test"]["exits"][-1])
            entry = zoo.add(run, run.parent.name, run.name, test, folder=args.zoo)
            print(f"[train_zoo] {entry.id}: test {test:.2f} %, val {entry.val_accuracy:.2f} % "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
