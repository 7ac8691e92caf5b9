"""Nonsense is refused or flagged, never reported as a result (issue 27): each test builds its hostile input."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from wxy_hw.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from wxy_hw.hardware import deploy_on, evaluate_chips
from wxy_hw.models import build_model
from wxy_hw.models.evaluation import ExitMetrics, NonFiniteInputError, evaluate
from wxy_hw.studies.train import train_run
from wxy_hw.train import RunDiverged, divergence_verdict

from helpers import TINY, TINY_FLAGS, cli


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished one-epoch training run on synthetic data."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train_run(out=out, epochs=1, **TINY)
    return out


def hostile(finished: Path, path: Path, change) -> Path:
    """A copy of the finished run's best.pt with ``change(payload)`` applied."""
    payload = torch.load(finished / "best.pt", weights_only=True)
    change(payload)
    torch.save(payload, path)
    return path


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def batches(x: torch.Tensor, n: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x, torch.arange(len(x)) % 10) for _ in range(n)]


# --- case 1: checkpoints are validated as a whole when read ----------------------------------------
def nan_weights(p):
    p["model_state"] = {k: torch.full_like(v, math.nan) if v.is_floating_point() else v
                        for k, v in p["model_state"].items()}


@pytest.mark.parametrize("change, says", [
    (nan_weights, "model_state holds NaN or infinite values in"),
    (lambda p: p.pop("model_state"), "model_state is missing"),
    (lambda p: p.update(model_state=[1, 2]), "model_state is a list, not a dict of tensors"),
    (lambda p: p.update(model_config="resnet8"), "model_config is a str, not dict"),
    (lambda p: p["model_config"].pop("arch"), "model_config.arch is missing"),
    (lambda p: p["model_config"].update(depth=3), "model_config has unknown field(s) depth"),
    (lambda p: p["model_config"].update(width=1e6), "model_config.width is 1000000.0, outside (0, 16]"),
    (lambda p: p["model_config"].update(image_size=10 ** 6), "model_config.image_size is 1000000, outside 8..1024"),
    (lambda p: p["model_config"].update(num_classes=10 ** 9), "model_config.num_classes is 1000000000"),
    (lambda p: p["model_config"].update(in_channels=7), "model_config.in_channels is 7, not 1 or 3"),
    (lambda p: p["data"].update(std=[0.0]), "data.std is [0.0], not finite numbers > 0"),
    (lambda p: p["data"].update(channels=3), "data.channels is 3 but model_config.in_channels is 1"),
    (lambda p: p.update(data=None), "data is missing"),
])
def test_broken_checkpoints_are_one_line_naming_file_and_field(finished, tmp_path, change, says):
    path = hostile(finished, tmp_path / "broken.pt", change)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path, data=True)
    msg = str(info.value)
    assert str(path) in msg and says in msg and "\n" not in msg, msg


def test_checkpoint_without_data_is_refused_before_the_study_starts(finished, tmp_path, capsys):
    for name, change, says in (("nan.pt", nan_weights, "model_state holds NaN"),
                               ("nodata.pt", lambda p: p.pop("data"), "data is missing")):
        path = hostile(finished, tmp_path / name, change)
        for study in ("noise_sweep", "early_exit_energy", "quant_sweep", "corruption_robustness", "chip_study",
                      "calibrator_adapt"):
            out = tmp_path / f"{study}_{name}"
            flag = "--source" if study == "calibrator_adapt" else "--dataset"
            assert cli(study)(["--checkpoints", str(path), flag, "synthetic", "--out", str(out), "--quiet"]) == 2
            err = one_line(capsys.readouterr().err)
            assert name in err and says in err, (study, err)
            assert not out.exists()  # no run directory, no manifest


def test_weights_that_do_not_fit_the_architecture_are_refused_before_the_study_starts(finished, tmp_path, capsys):
    def reshape(payload):
        key = next(k for k, v in payload["model_state"].items() if v.dim() == 4 and v.shape[1] > 1)
        payload["model_state"][key] = payload["model_state"][key][:, :1].clone()

    def unknown_arch(payload):
        payload["model_config"]["arch"] = "resnet_nonexistent"

    for name, change in (("shape.pt", reshape), ("arch.pt", unknown_arch)):
        path = hostile(finished, tmp_path / name, change)
        out = tmp_path / f"sweep_{name}"
        assert cli("noise_sweep")(["--checkpoints", str(path), "--dataset", "synthetic", "--out", str(out),
                                   "--quiet"]) == 2
        err = one_line(capsys.readouterr().err)
        assert name in err, err  # the file is named
        assert not out.exists()  # no run directory, no manifest


# --- case 2: a run that learned nothing is marked diverged --------------------------------------------
def test_lr_30_is_marked_diverged_with_a_non_zero_exit(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli("train")(["--out", str(out), "--epochs", "1", "--lr", "30", *TINY_FLAGS]) == 2
    err = one_line(capsys.readouterr().err)
    assert "training diverged at lr 30" in err and "--overwrite --lr 3" in err and "chance" in err, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "diverged" and manifest["reason"].startswith("training diverged")
    assert json.loads((out / "results.json").read_text())["status"] == "diverged"
    with pytest.raises(ValueError, match="diverged after all its epochs"):
        train_run(out=out, epochs=1, lr=3, resume=True, **TINY)


def test_divergence_needs_real_evidence():
    def metrics(acc: float, loss: float) -> ExitMetrics:
        return ExitMetrics([acc], [loss], acc, loss, 100)

    assert divergence_verdict(metrics(10.0, 2.4), 10, full_epochs=True) is None  # untrained, not blown up
    assert divergence_verdict(metrics(10.0, 40.0), 10, full_epochs=False) is None  # one-step smoke test: no verdict
    assert divergence_verdict(metrics(60.0, 40.0), 10, full_epochs=True) is None  # learned, if overconfident
    assert divergence_verdict(metrics(16.7, 308.0), 10, full_epochs=False) is None  # a two-step smoke run of `at`
    assert "chance 10.0 %" in divergence_verdict(metrics(12.0, 40.0), 10, full_epochs=True)
    assert "validation loss 8e+28" in divergence_verdict(metrics(30.0, 8e28), 10, full_epochs=False)
    with pytest.raises(RunDiverged):  # what train_run raises is a user error (exit 2), recorded as "diverged"
        raise RunDiverged("x")
    assert RunDiverged.run_status == "diverged"


# --- case 3: non-finite inputs stop the evaluation ------------------------------------------------
def test_nan_images_stop_digital_and_chip_evaluation(tiny_model):
    x = torch.randn(8, 1, 28, 28)
    bad = batches(x) + [(torch.full_like(x, math.nan), torch.zeros(8, dtype=torch.long))]
    for run in (lambda: evaluate(tiny_model, bad),
                lambda: evaluate_chips(tiny_model, "reram", bad, [0, 1]),                   # K chips per pass
                lambda: evaluate_chips(tiny_model, "reram", bad, [0], read_noise_mode="per_mvm")):  # one at a time
        with pytest.raises(NonFiniteInputError) as info:
            run()
        msg = str(info.value)
        assert "batch 3 holds NaN or infinite values" in msg and "normalisation" in msg and "\n" not in msg
    evaluate(tiny_model, batches(x))  # finite images still score


# --- case 4: a network with nothing a device can hold is refused ---------------------------------
def test_model_without_conv_or_linear_is_refused_on_a_chip():
    digital = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.BatchNorm1d(1))
    data = batches(torch.randn(4, 1, 28, 28))
    for run in (lambda: evaluate_chips(digital, "reram", data, [0]), lambda: deploy_on(digital, "reram", 0)):
        with pytest.raises(ValueError, match="no Conv1d / Conv2d / Linear layer: nothing of it goes on the device"):
            run()


# --- case 5: a teacher must match the student's dataset and classes -------------------------------
def test_teacher_of_another_dataset_or_class_count_is_refused_before_training(finished, tmp_path, capsys):
    other = hostile(finished, tmp_path / "other.pt", lambda p: p["data"].update(name="fashion_mnist"))
    out = tmp_path / "kd"
    assert cli("train")(["--method", "kd", "--teacher", str(other), "--out", str(out), *TINY_FLAGS]) == 2
    err = one_line(capsys.readouterr().err)
    assert "was trained on 'fashion_mnist' but the student trains on 'synthetic'" in err, err
    assert not out.exists()
    five = build_model("resnet8", 5, 1, 0.125, 28, multi_exit=False)
    data = dict(read_checkpoint(finished / "best.pt")["data"], num_classes=5)
    save_checkpoint(tmp_path / "five.pt", five, data=data)
    with pytest.raises(CheckpointError, match="has num_classes 5 but the student on synthetic needs 10"):
        train_run(method="kd", teacher=str(tmp_path / "five.pt"), out=out, epochs=1,
                  **{k: v for k, v in TINY.items() if k != "method"})
    assert not out.exists()
