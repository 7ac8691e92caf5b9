"""The co-design search: fronts and their comparison worked by hand, the objectives of a design from its chips, the
pruner's verdicts, settings refused before any work, and a small search on synthetic data end to end — its front
bookkeeping, resume, and every front point's config.toml rerunning to the same numbers."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from helpers import TINY, cli, nonempty
from wxy_hw.analysis.report import render_html
from wxy_hw.analysis.pareto import dominated_share, dominates, hypervolume_2d, non_dominated
from wxy_hw.studies.codesign import (CodesignConfig, _pruning_hook, check_config, codesign_run, confirm_summary,
                                     open_search, report_section, summarize_chips, validation_halves)
from wxy_hw.data.base import Split
from wxy_hw.run_dir import RunDirectory
from wxy_hw.studies.config import SettingError
from wxy_hw.studies.train import train_run
from wxy_hw.train import TrainingPruned
from wxy_hw.utils import file_sha256

MAX = {"acc": "max", "e": "min"}


def test_dominance_and_front_by_hand():
    a, b, c, d = dict(acc=90, e=5), dict(acc=80, e=5), dict(acc=95, e=9), dict(acc=90, e=5)
    assert dominates(a, b, MAX) and not dominates(b, a, MAX) and not dominates(a, d, MAX)
    nan = dict(acc=float("nan"), e=1)
    front = non_dominated([a, b, c, d, nan], MAX)
    assert front == [a, c]  # b dominated; d equals a (the first is kept); a NaN objective is never on the front
    assert dominated_share([b, c], [a], MAX) == 0.5
    assert math.isnan(dominated_share([], [a], MAX))
    with pytest.raises(ValueError, match="direction"):
        dominates(a, b, {"acc": "up"})


def test_hypervolume_2d_by_hand():
    # minimise e, maximise acc; reference (acc 0, e 10): a covers (10-5)·(90-0) = 450, c adds (10-9)·(95-90) = 5
    a, c = dict(acc=90, e=5), dict(acc=95, e=9)
    ref = dict(acc=0, e=10)
    assert hypervolume_2d([a, c, dict(acc=80, e=6)], MAX, ref) == pytest.approx(455.0)
    assert hypervolume_2d([a], MAX, ref) < hypervolume_2d([a, c], MAX, ref)
    assert hypervolume_2d([dict(acc=50, e=11)], MAX, ref) == 0.0  # beyond the reference: nothing


def test_objectives_of_a_design_from_its_chips_by_hand():
    chips = [dict(accuracy=a, energy_pJ=e, latency_ns=10.0) for a, e in ((90, 1.0), (80, 2.0), (70, 3.0), (60, 4.0),
                                                                        (50, 5.0))]
    s = summarize_chips(chips, digital=72.0, area_mm2=0.5, margin=2.0)
    assert s["accuracy_mean"] == 70.0
    assert s["accuracy_p10"] == pytest.approx(54.0)  # linear interpolation: 50 + 0.4 · (60 − 50)
    assert s["yield"] == pytest.approx(0.6)  # 90, 80 and 70 are within 2 points of 72 (or above it)
    assert s["energy_pJ"] == 3.0 and s["latency_ns"] == 10.0 and s["area_mm2"] == 0.5
    assert s["accuracy_std"] == pytest.approx(math.sqrt(250.0))


def test_confirmation_pairs_each_point_with_the_reference_by_seed():
    rows = [dict(point=p, seed=s, accuracy_mean=acc, energy_pJ=e, accuracy_p10=acc - 1, **{"yield": y})
            for p, s, acc, e, y in [("reference", 1, 50.0, 10.0, 0.0), ("reference", 2, 60.0, 10.0, 0.5),
                                    ("7", 1, 70.0, 5.0, 1.0), ("7", 2, 74.0, 5.0, 1.0)]]
    ref, point = confirm_summary(rows, [1, 2])
    assert ref["point"] == "reference" and ref["vs_reference"] == "—"
    assert point["vs_reference_mean"] == pytest.approx(17.0)  # (20 + 14) / 2
    assert point["energy_vs_reference"] == pytest.approx(0.5)
    assert point["accuracy_mean"] == pytest.approx(72.0) and point["yield_mean"] == 1.0
    assert "±" in point["vs_reference"]  # a t interval over the two seeds' differences


def test_the_search_scores_validation_images_the_thresholds_were_not_tuned_on():
    split = Split(torch.zeros(9, 1, 2, 2, dtype=torch.uint8), torch.arange(9))
    tune, held = validation_halves(split, 3, seed=0)
    assert len(tune) == len(held) == 3 and not set(tune.labels.tolist()) & set(held.labels.tolist())
    tune, held = validation_halves(split, 100, seed=0)  # a small split: two disjoint halves of it
    assert len(tune) == 4 and len(held) == 5 and not set(tune.labels.tolist()) & set(held.labels.tolist())


def test_the_default_cells_are_the_device_files_own():
    from wxy_hw.hardware.spec import load_device
    from wxy_hw.studies.codesign import Design

    assert CodesignConfig().bits_per_cell == [0]
    chip = Design("baseline", 0.25, 2, rows=128, adc_bits=6, bits_per_cell=0).chip_config(load_device("reram"))
    assert chip.bits_per_cell is None  # what the device's levels hold: the cells the accuracy engine deploys
    assert chip.resolve().spec.mapping["weight_bits"] == 0
    # a chip dimension the search varies reaches the engine, not only the price
    sliced = Design("baseline", 0.25, 2, rows=128, adc_bits=6, bits_per_cell=1, parallel_rows=32)
    spec = sliced.chip_config(load_device("reram")).resolve().spec
    assert (spec.mapping["weight_bits"], spec.mapping["levels"], spec.array["parallel_rows"]) == (8, 2, 32)


def test_the_pruner_stops_a_training_below_its_methods_median():
    class Val:
        def __init__(self, final: float) -> None:
            self.final = final

    history = [dict(state="COMPLETE", curve={1: 50.0, 2: 70.0, 3: 80.0}),
               dict(state="COMPLETE", curve={1: 52.0, 2: 72.0, 3: 82.0})]
    hook, record = _pruning_hook(CodesignConfig(pruner="median", train_epochs=4), history)
    assert hook(1, Val(10.0)) is False  # epoch 1 is the warm-up
    assert hook(2, Val(20.0)) is True  # far below the median of 70 and 72 at epoch 2
    assert record["curve"] == {1: 10.0, 2: 20.0}
    hook, _ = _pruning_hook(CodesignConfig(pruner="median", train_epochs=2), history)
    assert hook(2, Val(20.0)) is False  # the last epoch: a finished training is kept, whatever its curve
    hook, _ = _pruning_hook(CodesignConfig(pruner="median", train_epochs=4), history)
    assert hook(2, Val(75.0)) is False
    hook, _ = _pruning_hook(CodesignConfig(pruner="none", train_epochs=4), history)
    assert hook(2, Val(0.0)) is False


def test_a_pruned_training_is_kept_unfinished_and_resumable_and_leaves_the_search_running(tmp_path):
    out = tmp_path / "run"
    search = RunDirectory(tmp_path / "search", {}, kind="codesign")  # the search that trains it, open around it
    with pytest.raises(TrainingPruned, match="pruned after epoch 1/2"):
        train_run(**{**TINY, "epochs": 2}, out=out, on_epoch=lambda epoch, val: True)
    assert json.loads((tmp_path / "search" / "manifest.json").read_text())["status"] == "running"
    search.finish()
    assert (out / "last.pt").is_file()
    manifest = (out / "manifest.json").read_text()
    assert '"status": "pruned"' in manifest  # never taken for a finished model
    train_run(**{**TINY, "epochs": 2}, out=out, resume=True)  # it continues where the pruner stopped it
    assert '"status": "complete"' in (out / "manifest.json").read_text()


@pytest.mark.parametrize("settings, flag", [
    (dict(objectives=["accuracy", "speed"]), "objectives"),
    (dict(objectives=["energy", "energy"]), "objectives"),
    (dict(exit_stage_sets=["23"]), "exit_stage_sets"),
    (dict(heads=["linear"]), "heads"),  # self-distillation's hint needs heads that map to the deepest features
    (dict(methods=["kd"]), "methods"),
    (dict(device="digital_int8"), "device"),
    (dict(trials=0), "trials"),
    (dict(width=[]), "width"),
    (dict(sampler="grid"), "sampler"),
    (dict(arch=["resnet7"]), "arch"),
    (dict(population=1), "population"),
    (dict(confirm_seeds=[0, 1]), "confirm_seeds"),  # the search's own seed: not from scratch
    (dict(device_set={"noise": {"read_sigma": 0.1}}), "methods"),  # hwa would train on the file's noise
    (dict(grid=["kd"]), "grid"),
])
def test_impossible_searches_are_refused_by_their_setting(settings, flag):
    with pytest.raises(SettingError) as exc:
        check_config(CodesignConfig(**settings))
    assert exc.value.field == flag


# a search small enough for the suite: synthetic images, resnet8, one epoch, two chips of 40 images
SMALL = dict(dataset="synthetic", arch=["resnet8"], width=[0.125, 0.25], methods=["baseline", "self_distillation"],
             exit_stage_sets=["34"], heads=["byot"], rows=[64, 128], adc_bits=[4, 8], bits_per_cell=[1],
             ranging=["fixed"], bn_recalibrate=[0], train_epochs=1, train_subset=64, samples=40, chips=2,
             population=2, trainings=2, torch_device="cpu")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_small_search_resumes_and_its_front_points_rerun_to_the_same_numbers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "search"
    codesign_run(out=out, trials=3, progress=False, **SMALL)
    with pytest.raises(FileExistsError, match="--resume"):
        open_search(out, CodesignConfig(**SMALL, trials=3), resume=False)
    with pytest.raises(ValueError, match="chips"):
        codesign_run(out=out, trials=5, progress=False, resume=True, **{**SMALL, "chips": 3})
    first = {r["trial"]: r for r in _rows(out / "trials.csv")}
    # a trial a killed process left running is failed and its design proposed again first
    search = open_search(out, CodesignConfig(**SMALL, trials=5), resume=True)
    search.designs.ask().suggest_categorical("method", SMALL["methods"])
    result = codesign_run(out=out, trials=5, progress=False, resume=True, **SMALL)
    rows = _rows(out / "trials.csv")
    measured = [r for r in rows if r["outcome"] == "measured" and r["trial"] != "reference"]
    assert len([r for r in rows if r["outcome"] in ("measured", "training pruned") and r["trial"] != "reference"]) == 5
    for trial, before in first.items():  # resumed: the first three designs are not measured again
        if before["outcome"] == "measured":
            after = next(r for r in rows if r["trial"] == trial)
            assert after["accuracy_mean"] == before["accuracy_mean"]
    states = [t.state.name for t in open_search(out, CodesignConfig(**SMALL, trials=5), resume=True).designs.trials]
    assert "FAIL" in states and "RUNNING" not in states
    # the front: non-dominated among the measured designs; every other one is dominated by a front point or equals
    # one (the same design proposed twice)
    objectives = {"accuracy_mean": "max", "energy_pJ": "min"}
    values = [{k: float(r[k]) for k in objectives} | {"trial": r["trial"]} for r in measured]
    front = {r["trial"] for r in _rows(out / "front.csv")}
    assert front == {p["trial"] for p in non_dominated(values, objectives)}
    assert all(r["on_front"] == str(r["trial"] in front) for r in measured)
    for p in values:
        if p["trial"] not in front:
            assert any(dominates(q, p, objectives) or all(q[k] == p[k] for k in objectives)
                       for q in values if q["trial"] in front)
    assert 0 <= result["reference"]["accuracy_mean"] <= 100
    assert {r["chip"] for r in _rows(out / "chips.csv")} == {"2000", "2001"}  # the search's chips
    assert (out / "front.png").is_file() and (out / "table.md").read_text().startswith("Co-design search")
    # the manifest names the exact network behind every training the search measured (as every study's does)
    records = json.loads((out / "manifest.json").read_text())["checkpoint_records"]
    trainings = open_search(out, CodesignConfig(**SMALL, trials=5), resume=True).trainings.get_trials()
    assert records and set(records) == {t.user_attrs["name"] for t in trainings if t.user_attrs["checkpoint"]}
    for rec in records.values():
        assert rec["sha256"] == file_sha256(rec["path"]) and rec["method"] in SMALL["methods"]
    # reproduce.py --codesign: the finished search as a section of the report, its figure embedded
    page = render_html([], title="t", preamble="p", sections=[report_section(out)])
    assert "<h2>Co-design search: search</h2>" in page and "data:image/png;base64," in page
    with pytest.raises(ValueError, match="not a finished codesign run"):
        report_section(tmp_path / "runs" / "cache" / "synthetic_resnet8_w0.125_e1_n64_s0" / "baseline")
    # every measured design has a config; a front point's reruns alone to the same numbers
    configs = {p.stem for p in (out / "configs").glob("*.toml")}
    assert configs == {f"trial_{int(r['trial']):04d}" for r in measured}
    point = nonempty(sorted(front))[0]
    again = tmp_path / "again"
    assert cli("codesign")(["--config", str(out / "configs" / f"trial_{int(point):04d}.toml"), "--out", str(again),
                            "--quiet"]) == 0
    rerun = [r for r in _rows(again / "trials.csv") if r["trial"] != "reference"]
    original = next(r for r in measured if r["trial"] == point)
    assert len(rerun) == 1
    for k in ("accuracy_mean", "accuracy_p10", "yield", "energy_pJ", "latency_ns", "area_mm2"):
        assert float(rerun[0][k]) == pytest.approx(float(original[k]), rel=1e-9), k


@pytest.mark.slow
def test_the_training_cap_bounds_the_models_a_search_trains_and_the_grid_is_compared(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "capped"
    result = codesign_run(out=out, trials=4, progress=False, grid=["baseline"], **{**SMALL, "trainings": 1})
    search = open_search(out, CodesignConfig(**{**SMALL, "trainings": 1}, trials=4, grid=["baseline"]), resume=True)
    used = {(t.params["method"], t.params["arch"], t.params["width"]) for t in search.measured()}
    assert len(used) == 1  # one distinct model, whichever it is (the reference's counts once a trial uses it)
    capped = [t for t in search.designs.trials if t.user_attrs.get("outcome") == "over the training cap"]
    assert nonempty(capped) and all(t.state.name == "FAIL" for t in capped)  # samplers ignore them
    grid = _rows(out / "grid.csv")
    assert len(grid) == 2 * 2  # baseline × rows 64, 128 × ADC 4, 8 bits × 1 bit per cell
    assert {r["method"] for r in grid} == {"baseline"} and {r["width"] for r in grid} == {"0.25"}
    comparison = {r["designs"]: r for r in result["comparison"]}
    assert comparison["grid"]["trainings"] == 1 and comparison["search"]["trainings"] == 1
    assert comparison["grid"]["measured"] == 4 and comparison["search"]["measured"] == 4
    assert 0 <= comparison["search"]["dominated_by_other"] <= 1
    assert {p.stem for p in (out / "configs").glob("grid_*.toml")} == {f"grid_{int(r['trial'][1:]):04d}" for r in grid}


def test_an_unreadable_training_is_recorded_as_such_and_never_costs_the_search_its_results(tmp_path):
    from types import SimpleNamespace

    from wxy_hw.studies.codesign import training_records

    (tmp_path / "best.pt").write_bytes(b"garbage")
    trials = [SimpleNamespace(user_attrs={"name": "a", "checkpoint": str(tmp_path / "best.pt")}),
              SimpleNamespace(user_attrs={"name": "b", "checkpoint": str(tmp_path / "gone.pt")}),
              SimpleNamespace(user_attrs={"name": "c", "checkpoint": None})]  # a pruned training: no file
    search = SimpleNamespace(trainings=SimpleNamespace(get_trials=lambda deepcopy=False: trials))
    records = training_records(search)
    assert set(records) == {"a", "b"} and all("unreadable" in r for r in records.values())
    assert "\n" not in records["a"]["unreadable"]
