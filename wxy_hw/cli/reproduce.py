"""Rerun the seed's claims at one budget and write one self-contained report.

    python experiments/reproduce.py --budget small      # ≤ 30 min on a 2-core CPU
    python experiments/reproduce.py --budget medium     # the studies' default-model budget, 3 seeds (hours)
    python experiments/reproduce.py --budget full       # all images, 30 epochs, 5 seeds (a GPU machine)
    python experiments/reproduce.py --budget smoke      # a few minutes on synthetic images (for tests)
    python experiments/reproduce.py --plan runs/reproduce/small   # seeds / chips / images each claim needs
    python experiments/reproduce.py --budget converged              # the zoo's recipe (models: train_zoo --reproduce)
    python experiments/reproduce.py --budget table1                 # the same cut to Table 1 (~1.5 h on a CPU)
    python experiments/reproduce.py --budget hardware               # cut to the on-chip claims: the zoo's models only
    python experiments/reproduce.py --budget hardware --devices subthreshold_cmos --seeds 0 1 2 3 4 5   # one device, more seeds
    python experiments/reproduce.py --budget decide --pilot runs/reproduce/converged   # the seeds that decide
    python experiments/reproduce.py --budget converged --reuse runs/reproduce/table1   # its models adopted, not retrained

Writes <out>/report.html (figures embedded; no external file or network), report.md,
claims.json, config.toml and commands.sh (every command behind every number; paths relative to
<out>, so a moved folder is still reused). Rerunning the same command reuses every finished step
whose files read back as written (a damaged one is rerun); an interrupted run continues where it
stopped.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Sequence

from ..analysis.report import verdict_counts
from ..analysis.verdicts import MIN_SEEDS
from ..run_dir import archive_of
from ..studies.reproduce import (BUDGETS, DECIDE, Reproduction, ReproduceConfig, ReproductionError,
                                 decide_budget, keep_pilot_report, with_devices)
from ..studies.codesign import report_section
from ..studies.compare_methods import check_workers
from ..studies.config import SettingError
from ..studies.reproduce_plan import check_pilot, plan_table
from ..studies.train import RERUN
from . import add_parallel_args, config_of, defaults, fail, new_parser, parse, run_guard, seed_int, torch_device


def build_parser() -> argparse.ArgumentParser:
    """The reproduce command line."""
    d = defaults(ReproduceConfig)
    parser = new_parser(__doc__, "reproduce")
    parser.add_argument("--budget", default=d["budget"], choices=[*BUDGETS, DECIDE],
                        help="how much to train and sample (decide: the converged recipe with the seeds --pilot's "
                             "spread says every Table-1 claim needs for 80 %% power)")
    parser.add_argument("--pilot", default=d["pilot"], metavar="RUN",
                        help="--budget decide: the finished converged (or table1) reproduction to plan from and extend (the "
                             "default --out; its own report is kept in RUN/pilot/); an archived one under results/ is "
                             "only read (the run then goes to runs/reproduce/decide and retrains the pilot's seeds)")
    parser.add_argument("--seeds", type=seed_int, nargs="+", default=d["seeds"],
                        help=f"training seeds (None: the budget's; at least {MIN_SEEDS}: a verdict needs them)")
    parser.add_argument("--devices", nargs="+", default=d["devices"], metavar="DEVICE",
                        help="--budget hardware: only these of its devices (None: all); one alone extends its on-chip "
                             "claims to more --seeds without training or sweeping the others")
    parser.add_argument("--reuse", nargs="+", default=d["reuse"], metavar="RUN",
                        help="earlier reproductions: a model one of them trained with exactly this budget's settings "
                             "(same seed, recipe, start and teacher by content) is adopted, evaluated, not retrained; "
                             "its manifest names the run it came from")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (None: runs/reproduce/<budget>, with _<device> for each of --devices)")
    parser.add_argument("--data-dir", default=d["data_dir"], help="directory holding the dataset files")
    parser.add_argument("--torch-device", type=torch_device, default=d["torch_device"],
                        help="torch device for training and evaluation")
    parser.add_argument("--quiet", action="store_true", help="print only the verdict counts and the report's path")
    add_parallel_args(parser, d["workers"], d["ray_address"])  # the training steps' runs side by side
    parser.add_argument("--codesign", nargs="+", default=d["codesign"], metavar="RUN",
                        help="finished co-design searches (wxy-hw codesign run folders) shown as sections of the report")
    plan = parser.add_argument_group("power planning (runs nothing)")
    plan.add_argument("--plan", type=Path, default=None, metavar="PILOT",
                      help="print, from a finished reproduction in PILOT, the seeds each claim needs for 80 %% power "
                           "at its margin, and the time that would take")
    plan.add_argument("--plan-chips", type=int, default=25,
                      help="chips per seed of the larger evaluation planned (and run by --budget decide)")
    plan.add_argument("--plan-images", type=int, default=2000,
                      help="test images per evaluation of the larger one (and of --budget decide)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reproduction from the command line; the exit status."""
    args = parse(build_parser(), argv, ReproduceConfig)
    if args.plan is not None:
        try:
            if args.plan_chips < 1 or args.plan_images < 1:
                raise ValueError("--plan-chips and --plan-images must be at least 1")
            check_pilot(args.plan, "--plan")
            print(plan_table(args.plan, args.plan_chips, args.plan_images), end="")
        except Exception as exc:
            return fail(exc)
        return 0
    try:
        twice = sorted({s for s in args.seeds or [] if args.seeds.count(s) > 1})
        if twice:  # a seed given twice would train and count one model as two
            raise SettingError("seeds", f"lists {', '.join(map(str, twice))} more than once: give each seed once "
                                        f"(e.g. --seeds 0 1 2)")
        if (args.budget == DECIDE) != (args.pilot is not None):
            raise ValueError("--budget decide and --pilot RUN go together: the pilot (a finished --budget converged or table1 "
                             "run) is what decide plans its seeds from")
        if args.budget == DECIDE and args.seeds:
            raise ValueError("--budget decide chooses its seeds from the pilot's spread: drop --seeds")
    except ValueError as exc:
        return fail(exc)
    # a pilot run is extended in place; an archived one (results/, no models kept) is read, and the run goes to runs/
    extend = args.pilot is not None and archive_of(args.pilot) is None
    # one device's extension gets its own folder: the budget's report over every device is not overwritten
    named = "_".join([args.budget, *sorted(set(args.devices or []))])
    args.out = args.out or (Path(args.pilot) if extend else Path("runs") / "reproduce" / named)
    args.resume = True  # <out> is meant to be re-run: finished steps are reused
    try:
        conf = config_of(ReproduceConfig, args)
        if conf.budget == DECIDE:
            assert conf.pilot is not None  # checked above: decide comes with --pilot
            budget = decide_budget(Path(conf.pilot), args.plan_chips, args.plan_images)
            if not args.quiet:
                print(f"[reproduce] --budget decide: {len(budget.seeds)} seeds ({budget.note})")
        else:
            budget = BUDGETS[conf.budget]
        if conf.seeds:
            budget = dataclasses.replace(budget, seeds=tuple(conf.seeds))  # distinct: checked above
        budget = with_devices(budget, conf.devices)
        check_workers(conf.workers, conf.ray_address, conf.torch_device)  # before any work, as the step would
        if len(budget.seeds) < MIN_SEEDS and budget.name != "smoke":
            raise ValueError(f"--seeds: a verdict needs at least {MIN_SEEDS} training seeds, got "
                             f"{len(budget.seeds)}; give {MIN_SEEDS} or more (e.g. --seeds 0 1 2)")
        with run_guard(args, kind="reproduce"):
            if conf.pilot and Path(conf.pilot).resolve() == Path(args.out).resolve():
                keep_pilot_report(Path(conf.pilot))  # the decide run rewrites the pilot's report in place
            rep = Reproduction(budget, args.out, torch_device=conf.torch_device, data_dir=conf.data_dir,
                               log=(lambda msg: None) if args.quiet else print,
                               sections=[report_section(p) for p in conf.codesign], workers=conf.workers,
                               ray_address=conf.ray_address, reuse=conf.reuse or ())
            conf.write(args.out)
            html_path, md_path = rep.run()
    except ReproductionError as exc:  # the step's own error line is folded into this one
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C in a step or between steps: one line, what to do, exit 130
        exc.args = (f"{str(exc) or 'reproduce stopped'}; {RERUN}",)  # the same exception: a signal keeps its status
        return fail(exc)
    except Exception as exc:
        return fail(exc)
    print(verdict_counts(rep.claims))
    print(f"report: {html_path}\n        {md_path}")
    return 0
