"""Bad input and faults (issue 14): each case stops with one line, runs no code from files, loses nothing."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from wxy_hw.checkpoint import CheckpointError, load_model, read_checkpoint
from wxy_hw.data import CorruptDatasetError, load_dataset
from wxy_hw.studies.train import train_run
from wxy_hw.run_dir import OutputDirError, RunDirectory, claim_run_dir, release_run_dir
from wxy_hw.train import Trainer, TrainingDiverged, TrainingInterrupted

from helpers import ROOT, TINY, TINY_FLAGS, cli, snapshot
from test_data import write_cifar
from test_train import make_trainer


class Marker:
    """A pickle payload that creates a file when unpickled: the proof that a loader ran code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished one-epoch training run on synthetic data."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train_run(out=out, epochs=1, **TINY)
    return out


# --- case 1: data files never run code ----------------------------------------------------------
def test_cifar_pickle_with_a_reduce_payload_is_refused_and_runs_nothing(tmp_path):
    root = write_cifar(tmp_path / "cifar-10-batches-py")
    marker = tmp_path / "pwned"
    (root / "data_batch_2").write_bytes(pickle.dumps({b"data": Marker(marker), b"labels": [0]}))
    with pytest.raises(CorruptDatasetError) as info:
        load_dataset("cifar10", tmp_path)
    assert not marker.exists()
    msg = str(info.value)
    assert "data_batch_2" in msg and "could run code" in msg and "\n" not in msg
    load_dataset("cifar10", write_cifar(tmp_path / "genuine"))  # genuine batches (numpy arrays) still load


# --- case 12: checkpoint errors are one line and never advise weights_only=False -----------------
def test_checkpoint_errors_are_one_line_without_torch_internals(finished, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": "wxy_hw.checkpoint/1", "x": Marker(marker)}, tmp_path / "evil.pt")
    (tmp_path / "cut.pt").write_bytes((finished / "best.pt").read_bytes()[:300])
    payload = read_checkpoint(finished / "best.pt")
    payload["model_state"] = {k: v[..., :1] if v.ndim else v for k, v in payload["model_state"].items()}
    torch.save(payload, tmp_path / "shapes.pt")
    for name, expected in (("evil.pt", "could run code"), ("cut.pt", "truncated"), ("shapes.pt", "shape (checkpoint vs model)")):
        with pytest.raises(CheckpointError) as info:
            load_model(tmp_path / name)
        msg = str(info.value)
        assert name in msg and expected in msg, msg
        assert "\n" not in msg and "weights_only" not in msg
    assert not marker.exists()


# --- case 3 and 4: one guard for --out in every CLI ----------------------------------------------
def test_out_that_is_or_lies_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    for out, says in ((tmp_path / "f", "is a file"), (tmp_path / "f" / "sub", "lies under")):
        assert cli("train")(["--out", str(out), "--epochs", "1", *TINY_FLAGS]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1 and "Traceback" not in err
    assert (tmp_path / "f").read_text() == "x"


def test_used_out_is_refused_untouched_and_overwrite_replaces_it(finished, tmp_path, capsys):
    before = snapshot(finished)
    for name in ("train", "noise_sweep", "early_exit_energy", "quant_sweep", "chip_study", "corruption_robustness",
                 "calibrator_adapt"):
        extra = TINY_FLAGS if name == "train" else ["--quiet"]
        assert cli(name)(["--out", str(finished), *extra]) == 2, name
        err = capsys.readouterr().err
        assert "already holds a train run (status complete, started" in err and "--overwrite" in err, (name, err)
    assert snapshot(finished) == before  # byte-identical, no lock or temp file left behind
    # A directory that is not a run directory is never cleared, not even with --overwrite.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(OutputDirError, match="not a wxy_hw run directory"):
        claim_run_dir(tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    # --overwrite clears the old run's outputs when the new run starts: nothing of it is mixed in.
    run = tmp_path / "run"
    (run / "old").mkdir(parents=True)
    (run / "old" / "stale.csv").write_text("old")
    (run / "manifest.json").write_text(json.dumps({"tool": "wxy_hw", "kind": "noise_sweep", "status": "complete",
                                                   "outputs": ["old", "manifest.json"]}))
    claim_run_dir(run, overwrite=True)
    try:
        assert (run / "old" / "stale.csv").exists()  # nothing is lost before the new run really starts
        RunDirectory(run, {"seed": 0}, kind="test").finish()
    finally:
        release_run_dir(run)
    assert sorted(p.name for p in run.iterdir()) == ["manifest.json"]
    assert json.loads((run / "manifest.json").read_text())["kind"] == "test"


def test_refused_resume_leaves_the_run_untouched(finished, tmp_path):
    before = snapshot(finished)
    with pytest.raises(ValueError, match="finished run"):
        train_run(out=finished, epochs=1, resume=True, **TINY)
    assert snapshot(finished) == before
    # An unfinished run whose last.pt is malicious, cut short, or from other settings: refused, manifest kept.
    run = tmp_path / "run"
    run.mkdir()
    for name, data in before.items():
        (run / name).write_bytes(data)
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps(dict(manifest, status="interrupted")))
    good_last = (run / "last.pt").read_bytes()
    torch.save({"format": "wxy_hw.checkpoint/1", "x": Marker(tmp_path / "pwned")}, run / "evil.pt")
    for last, kwargs, says in (((run / "evil.pt").read_bytes(), {}, "could run code"),
                               (good_last[:300], {}, "truncated"),
                               (good_last, {"seed": 1}, "seed: checkpoint has 0")):
        (run / "last.pt").write_bytes(last)
        kept = snapshot(run)
        with pytest.raises(CheckpointError, match=says):
            train_run(out=run, epochs=1, resume=True, **{**TINY, **kwargs})
        assert snapshot(run) == kept
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_second_process_on_the_same_out_refuses_and_ctrl_c_is_one_line(tmp_path):
    """Real processes: a training run holds --out; a sweep into it refuses; Ctrl-C stops the run cleanly.

    The run is far longer than the test waits (tiny epochs finish fast on an idle machine), so the
    signal always lands during training."""
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    first = subprocess.Popen([sys.executable, str(ROOT / "experiments" / "train.py"), "--method", "baseline",
                              "--epochs", "100000", "--out", str(out), *TINY_FLAGS],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                             # a suite started in the background (nohup … &) inherits SIGINT ignored; the
                             # run must see Ctrl-C as a terminal user's run does
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 240
        while not (out / "last.pt").exists():
            assert first.poll() is None and time.time() < deadline, first.communicate()
            time.sleep(0.2)
        second = subprocess.run([sys.executable, str(ROOT / "experiments" / "noise_sweep.py"), "--checkpoints",
                                 str(out / "best.pt"), "--out", str(out), "--quiet"],
                                capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)
        assert first.poll() is None, "the training run ended before the second process tried its --out"
        assert second.returncode == 2 and "being written by pid " in second.stderr, second.stderr
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, err
    assert err.startswith("interrupted: training in") and err.count("\n") == 1 and "Traceback" not in err, err
    epoch = read_checkpoint(out / "last.pt")["epoch"] + 1
    assert f"last complete checkpoint: {out / 'last.pt'} (epoch {epoch})" in err and "--resume" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and "last complete checkpoint" in manifest["reason"]
    assert not (out / ".lock").exists()


# --- case 5 and 6: every argument is checked before any work ---------------------------------------
@pytest.mark.parametrize("name, argv", [
    ("noise_sweep", ["--scales", "0", "nan"]), ("noise_sweep", ["--t-inference", "nan"]),
    ("noise_sweep", ["--times", "inf"]), ("noise_sweep", ["--sigmas", "-0.1"]),
    ("noise_sweep", ["--chips", "0"]), ("early_exit_energy", ["--t-inference", "-inf"]),
    ("quant_sweep", ["--t-inference", "nan"]), ("chip_study", ["--ir-beta-per-row", "nan"]),
    ("corruption_robustness", ["--eps-linf", "nan"]), ("calibrator_adapt", ["--epsilon", "0"]),
    ("train", ["--lr", "nan"]), ("train", ["--val-fraction", "1"]), ("train", ["--width", "-1"]),
])
def test_bad_numbers_are_refused_when_parsed(name, argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli(name)([*argv, "--quiet"])
    assert info.value.code == 2 and "expected " in capsys.readouterr().err


def test_unknown_target_and_non_qat_checkpoints_are_refused_before_any_work(finished, monkeypatch, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr("wxy_hw.studies.calibrator_adapt.cached_checkpoint", no_work)
    assert cli("calibrator_adapt")(["--target", "digitz", "--quiet"]) == 2
    assert "unknown target 'digitz'" in capsys.readouterr().err
    monkeypatch.setattr("wxy_hw.studies.quant_sweep.resolve_checkpoints", no_work)
    assert cli("quant_sweep")(["--qat-checkpoints", str(finished / "best.pt"), "--dataset", "synthetic",
                               "--quiet"]) == 2
    assert "is not a quantization-aware checkpoint" in capsys.readouterr().err


# --- case 7: a checkpoint of another dataset is refused -------------------------------------------
def test_checkpoint_of_another_dataset_is_refused(finished, tmp_path, capsys):
    for name in ("noise_sweep", "early_exit_energy", "quant_sweep", "corruption_robustness"):
        assert cli(name)(["--checkpoints", str(finished / "best.pt"), "--dataset", "fashion_mnist",
                          "--out", str(tmp_path / name), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "trained on 'synthetic' but --dataset is 'fashion_mnist'" in err and "--dataset synthetic" in err, err
        assert not (tmp_path / name).exists()  # a refused run leaves no directory behind
    assert cli("chip_study")(["--checkpoints", str(finished / "best.pt"), "--quiet"]) == 2
    assert "trained on 'synthetic'" in capsys.readouterr().err
    assert cli("calibrator_adapt")(["--checkpoints", str(finished / "best.pt"), "--source", "digits", "--quiet"]) == 2
    assert "trained on 'synthetic' but --source is 'digits'" in capsys.readouterr().err


# --- cases 8, 9, 10: interruption, failure and divergence in training -------------------------------
def test_divergence_is_never_saved_and_fails_the_manifest(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli("train")(["--out", str(out), "--epochs", "2", "--lr", "1e6", *TINY_FLAGS]) == 2
    err = capsys.readouterr().err
    assert "training diverged in epoch 1/2" in err and "--overwrite --lr" in err and err.count("\n") == 1
    assert not (out / "best.pt").exists() and not (out / "last.pt").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["reason"].startswith("training diverged")


def test_after_divergence_resume_with_a_lower_lr_works(synthetic, tmp_path):
    fast = dict(method="dsn", epochs=3, max_steps_per_epoch=3)
    make_trainer(synthetic, tmp_path, **fast).fit(stop_after_epoch=1)
    kept = snapshot(tmp_path)
    # One step at lr 1e6: the training loss of that step is still finite, the weights and validation loss are not.
    bad = make_trainer(synthetic, tmp_path, lr=1e6, **{**fast, "max_steps_per_epoch": 1})
    with pytest.raises(TrainingDiverged, match=r"epoch 2/3 .*last good checkpoint: .*last.pt \(epoch 1\).*"
                                               r"--resume --lr 100000"):
        bad.fit(resume=True)
    assert snapshot(tmp_path) == kept  # the diverged epoch became neither best.pt nor last.pt
    good = make_trainer(synthetic, tmp_path, lr=0.01, **fast)
    result = good.fit(resume=True)
    assert good.resumed_from == {"epoch": 1, "lr": {"checkpoint": 0.05, "now": 0.01}}
    assert result.best_epoch >= 1 and read_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    assert [r["lr"] for r in result.history if r["split"] == "train"][1] == pytest.approx(0.01 * 0.75)


def test_interrupted_run_says_where_and_resumes_with_a_lower_lr(tmp_path, monkeypatch):
    out = tmp_path / "run"
    original = Trainer.fit

    def ctrl_c_after_first_epoch(self, *args, **kwargs):
        original(self, stop_after_epoch=1)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", ctrl_c_after_first_epoch)
    with pytest.raises(TrainingInterrupted, match=r"in epoch 2/2; last complete checkpoint: .*last.pt \(epoch 1\)"):
        train_run(out=out, epochs=2, lr=0.05, **TINY)
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(Trainer, "fit", original)
    train_run(out=out, epochs=2, lr=0.01, resume=True, **TINY)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["resumed_from"]["lr"] == {"checkpoint": 0.05, "now": 0.01}


@pytest.mark.slow
def test_a_study_overwrites_its_old_run_without_mixing(finished, tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["--device", "reram", "--checkpoints", str(finished / "best.pt"), "--dataset", "synthetic", "--scales", "1",
            "--times", "1", "--no-flat", "--chips", "1", "--samples", "20", "--out", str(out), "--quiet"]
    assert cli("noise_sweep")(argv) == 0, capsys.readouterr().err
    (out / "from_an_older_version.csv").write_text("stale")  # an output of the old run, recorded as its own
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["outputs"].append("from_an_older_version.csv")
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert cli("noise_sweep")(argv) == 2 and "already holds a noise_sweep run" in capsys.readouterr().err
    assert cli("noise_sweep")([*argv, "--overwrite"]) == 0, capsys.readouterr().err
    assert not (out / "from_an_older_version.csv").exists() and not (out / ".lock").exists()
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete" and (out / "sweep.csv").exists()


def test_a_lowered_learning_rate_stays_on_record_through_later_resumes(tmp_path, monkeypatch):
    """Resumed at a lower lr, stopped again, resumed at that lr: the manifest still says the run began at another
    lr (``earlier_resumes``), so --reuse never takes it for a run trained at the lower one throughout."""
    from wxy_hw.studies.earlier_runs import _changed_on_resume

    out = tmp_path / "run"
    original = Trainer.fit

    def stop_after(epoch):
        def fit(self, *args, **kwargs):
            original(self, stop_after_epoch=epoch)
            raise KeyboardInterrupt
        return fit

    monkeypatch.setattr(Trainer, "fit", stop_after(1))
    with pytest.raises(TrainingInterrupted):
        train_run(out=out, epochs=3, lr=0.05, **TINY)
    monkeypatch.setattr(Trainer, "fit", stop_after(2))
    with pytest.raises(TrainingInterrupted):
        train_run(out=out, epochs=3, lr=0.01, resume=True, **TINY)
    monkeypatch.setattr(Trainer, "fit", original)
    train_run(out=out, epochs=3, lr=0.01, resume=True, **TINY)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["resumed_from"] == {"epoch": 2}
    assert manifest["earlier_resumes"] == [{"resumed_from": {"epoch": 1, "lr": {"checkpoint": 0.05, "now": 0.01}}}]
    assert _changed_on_resume(manifest) and not _changed_on_resume({"resumed_from": {"epoch": 2}})
