"""--workers: a study's points as Ray tasks give the CSVs of the sequential run; without it Ray stays out."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import train_tiny
from wxy_hw.parallel import check_parallel, parallel_map, runs_on_ray

ROOT = Path(__file__).resolve().parents[1]


def _square(context: int, task: int) -> int:
    return context * task * task


def test_parallel_map_without_workers_runs_here_and_never_imports_ray():
    code = ("import sys; from wxy_hw.parallel import parallel_map; import wxy_hw.studies.noise_sweep, wxy_hw.cli.noise_sweep; "
            "assert parallel_map(lambda c, t: c + t, 10, [1, 2]) == [11, 12]; assert 'ray' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert parallel_map(_square, 2, [1, 2, 3]) == [2, 8, 18]
    with pytest.raises(ValueError, match="--workers"):
        check_parallel(0, None)
    assert runs_on_ray(1, None) is None
    assert runs_on_ray(2, None) == "Ray tasks (2 local workers)" and runs_on_ray(1, "h:6379") == "Ray tasks (h:6379)"


@pytest.mark.slow
def test_noise_sweep_on_two_ray_workers_writes_the_sequential_csvs(synthetic, tmp_path):
    pytest.importorskip("ray")
    from wxy_hw.studies import noise_sweep_run

    train_tiny(synthetic, "self_distillation", 1, tmp_path / "sd")
    common = dict(device="reram", checkpoints=[tmp_path / "sd" / "best.pt"], dataset="synthetic",
                  scales=(0.0, 1.0, 2.0), times=(1.0, 86400.0), chips=3, samples=40, flat=False,
                  progress=False, log=lambda _m: None)
    noise_sweep_run(out=tmp_path / "seq", **common)
    noise_sweep_run(out=tmp_path / "ray", workers=2, **common)
    for name in ("sweep.csv", "summary_scale.csv", "summary_time.csv", "table.md"):
        assert (tmp_path / "seq" / name).read_text() == (tmp_path / "ray" / name).read_text(), name


@pytest.mark.slow
def test_chip_study_on_two_ray_workers_writes_the_sequential_csvs(synthetic, tmp_path):
    pytest.importorskip("ray")
    from wxy_hw.studies import chip_study_run

    train_tiny(synthetic, "dsn", 1, tmp_path / "dsn")
    common = dict(checkpoints=[tmp_path / "dsn" / "best.pt"], dataset="synthetic", devices=["reram", "digital_int8"],
                  rows=[64, 128], adc_bits=[4, 8], bits_per_cell=[2], chips=2, samples=40, progress=False,
                  log=lambda _m: None)
    chip_study_run(out=tmp_path / "seq", **common)
    chip_study_run(out=tmp_path / "ray", workers=2, **common)
    for name in ("study.csv", "front.csv", "table.md"):
        assert (tmp_path / "seq" / name).read_text() == (tmp_path / "ray" / name).read_text(), name


@pytest.mark.slow
def test_early_exit_energy_on_two_ray_workers_writes_the_sequential_csvs(synthetic, tmp_path):
    pytest.importorskip("ray")
    import csv

    from wxy_hw.studies import early_exit_run

    train_tiny(synthetic, "self_distillation", 1, tmp_path / "sd")
    common = dict(device="reram", checkpoints=[tmp_path / "sd" / "best.pt"], dataset="synthetic", chips=3, samples=60,
                  progress=False, log=lambda _m: None)
    early_exit_run(out=tmp_path / "seq", **common)
    early_exit_run(out=tmp_path / "ray", workers=2, **common)
    for name in ("per_exit.csv", "front.csv"):
        assert (tmp_path / "seq" / name).read_text() == (tmp_path / "ray" / name).read_text(), name
    timed = ("wall_speedup",)  # wall clock differs between any two runs; every other column must not
    seq, ray = (list(csv.DictReader(open(tmp_path / d / "dynamic.csv"))) for d in ("seq", "ray"))
    assert len(seq) == 1 + 3
    assert [{k: v for k, v in r.items() if k not in timed} for r in seq] == \
           [{k: v for k, v in r.items() if k not in timed} for r in ray]


@pytest.mark.slow
def test_quant_sweep_on_two_ray_workers_writes_the_sequential_csv(synthetic, tmp_path):
    pytest.importorskip("ray")
    from wxy_hw.studies import quant_sweep_run

    train_tiny(synthetic, "dsn", 1, tmp_path / "dsn")
    common = dict(device="reram", checkpoints=[tmp_path / "dsn" / "best.pt"], dataset="synthetic", weight_bits=[8, 4],
                  chips=2, samples=40, calib_batches=1, progress=False, log=lambda _m: None)
    quant_sweep_run(out=tmp_path / "seq", **common)
    quant_sweep_run(out=tmp_path / "ray", workers=2, **common)
    for name in ("quant_sweep.csv", "table.md"):
        assert (tmp_path / "seq" / name).read_text() == (tmp_path / "ray" / name).read_text(), name


@pytest.mark.slow
def test_compare_methods_on_two_ray_workers_trains_the_sequential_models(tmp_path):
    """--workers 2: the runs of a comparison (teachers first) trained side by side are those trained in order: the
    same comparison.csv; a second call reuses every finished run; a GPU is never left idle behind CPU workers."""
    pytest.importorskip("ray")
    from wxy_hw.studies.compare_methods import compare_methods_run

    common = dict(methods=["at"], seeds=[0, 1], teacher_arch="resnet8", teacher_width=0.25,
                  dataset="synthetic", arch="resnet8", width=0.125, epochs=1, batch_size=64, max_steps_per_epoch=2,
                  torch_device="cpu", progress=False)
    said: dict[str, list[str]] = {"seq": [], "ray": []}
    compare_methods_run(out=tmp_path / "seq", announce=said["seq"].append, **common)
    compare_methods_run(out=tmp_path / "ray", workers=2, announce=said["ray"].append, **common)
    # one line per run as it finishes, counted over the whole comparison (teachers, then their students)
    for lines in said.values():
        assert [line.split(" ")[1] for line in lines] == ["1/4", "2/4", "3/4", "4/4"]
        assert sorted(line.split(" ")[2] for line in lines) == ["at/s0:", "at/s1:", "teacher/s0:", "teacher/s1:"]
        assert all("% (trained in" in line for line in lines)
    # the workers train on cores / 2 torch threads, the sequential run on the suite's: sums in another order may move
    # a near-tie prediction, never more than that
    seq, ray = (list(csv.DictReader((tmp_path / run / "comparison.csv").open())) for run in ("seq", "ray"))
    assert [(r["method"], r["seed"], r["exit"]) for r in seq] == [(r["method"], r["seed"], r["exit"]) for r in ray]
    assert all(abs(float(a["accuracy"]) - float(b["accuracy"])) <= 2.0 for a, b in zip(seq, ray))
    assert (tmp_path / "ray" / "teacher" / "s1" / "results.json").is_file()
    manifest = json.loads((tmp_path / "ray" / "at" / "s0" / "manifest.json").read_text())
    assert manifest["command"][0] == Path(sys.argv[0]).name  # this command's, not Ray's worker script
    stamp = (tmp_path / "ray" / "at" / "s1" / "best.pt").stat().st_mtime_ns
    said["ray"].clear()
    compare_methods_run(out=tmp_path / "ray", workers=2, announce=said["ray"].append, **common)
    assert len(said["ray"]) == 4 and all(line.endswith("(finished before, reused)") for line in said["ray"])
    assert (tmp_path / "ray" / "at" / "s1" / "best.pt").stat().st_mtime_ns == stamp


def test_compare_methods_refuses_cpu_workers_beside_a_gpu(tmp_path, monkeypatch):
    import importlib

    compare = importlib.import_module("wxy_hw.studies.compare_methods")
    monkeypatch.setattr(compare, "resolve_device", lambda _device: "cuda")
    for where in (dict(workers=2), dict(ray_address="10.0.0.1:6379")):  # refused before Ray is imported or probed
        with pytest.raises(ValueError, match="would leave the GPU idle"):
            compare.compare_methods_run(out=tmp_path / "gpu", methods=["baseline"], dataset="synthetic",
                                        arch="resnet8", epochs=1, progress=False, **where)
    assert not (tmp_path / "gpu").exists()  # refused before any work


@pytest.mark.slow
def test_an_error_in_a_ray_task_is_the_tasks_own_one_line():
    """A user error raised in a worker reaches the command as the sequential run raises it (its type and its one
    line), not as Ray's wrapper whose message carries the remote traceback."""
    pytest.importorskip("ray")

    def _refuse_two(_: None, task: int) -> int:  # defined here: Ray ships it by value (tests/ is not importable there)
        if task == 2:
            raise FileExistsError("runs/x holds a finished run with other settings; pass --out DIR for a new comparison")
        return task

    with pytest.raises(FileExistsError) as raised:
        parallel_map(_refuse_two, None, [1, 2], workers=2)
    assert type(raised.value) is FileExistsError
    assert str(raised.value) == "runs/x holds a finished run with other settings; pass --out DIR for a new comparison"


def test_errors_with_their_own_fields_survive_pickling():
    # a Ray worker's error reaches the command pickled: each keeps its type, its one line and its fields
    import pickle

    from wxy_hw.studies.config import SettingError
    from wxy_hw.train import TrainingInterrupted, TrainingPruned

    for error, fields in ((SettingError("chips", "must be ≥ 1"), ("field", "problem")),
                          (TrainingPruned("pruned at epoch 2", 2), ("epoch",)),
                          (TrainingInterrupted("stopped; rerun", "training in x stopped"), ("where",))):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error)
        assert all(getattr(back, f) == getattr(error, f) for f in fields)
