"""Trainer: learning, validation-based selection, checkpoints, resume determinism, NaN stop."""
from __future__ import annotations

import json

import pytest
import torch

from wxy_hw.checkpoint import CheckpointError, load_model, read_checkpoint
from wxy_hw.models.evaluation import evaluate
from wxy_hw.data import make_loaders
from wxy_hw.methods import DeeplySupervised, build_method
from wxy_hw.models import build_model
from wxy_hw.train import NonFiniteLossError, TrainConfig, Trainer, TrainingPruned, lr_factor


def make_trainer(data, run_dir, method="self_distillation", epochs=3, seed=0, options=None, **cfg):
    torch.manual_seed(seed)
    m = build_method(method, **(options or {})) if isinstance(method, str) else method
    model = build_model("resnet8", data.num_classes, data.channels, 0.125, data.image_size, multi_exit=m.multi_exit)
    config = TrainConfig(**{**dict(epochs=epochs, batch_size=32, lr=0.05, seed=seed, torch_device="cpu", progress=False), **cfg})
    return Trainer(model, m, data, config, run_dir)


@pytest.mark.slow
def test_self_distillation_learns_synthetic_data(synthetic, tmp_path):
    result = make_trainer(synthetic, tmp_path, epochs=6).fit()
    assert result.best_val > 60.0  # 10 classes: chance is 10 %
    model = load_model(result.best_path)
    val = evaluate(model, make_loaders(synthetic, 64)["val"])
    assert val.final == pytest.approx(result.best_val)  # best.pt is the validation-selected checkpoint
    splits = {r["split"] for r in result.history}
    assert splits == {"train", "val"}  # the trainer never looks at test
    assert {r["exit"] for r in result.history if r["split"] == "val"} == {"1", "2", "3", "4", "ensemble"}
    assert (tmp_path / "metrics.csv").read_text().startswith("epoch,split,exit,accuracy,loss,lr")
    assert not (tmp_path / "grad_norms.csv").exists()


@pytest.mark.slow
def test_resume_is_bit_identical_on_cpu(synthetic, tmp_path):
    full = make_trainer(synthetic, tmp_path / "full", epochs=3)
    full.fit()
    part = make_trainer(synthetic, tmp_path / "part", epochs=3)
    part.fit(stop_after_epoch=2)  # an interruption after epoch 2 ...
    resumed = make_trainer(synthetic, tmp_path / "part", epochs=3)
    resumed.fit(resume=True)  # ... then continue the same run to epoch 3
    a = read_checkpoint(tmp_path / "full" / "last.pt")["model_state"]
    b = read_checkpoint(tmp_path / "part" / "last.pt")["model_state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_checkpoint(tmp_path / "part" / "last.pt")["epoch"] == 2


@pytest.mark.slow
def test_a_run_saved_before_the_torch_device_rename_still_resumes(synthetic, tmp_path):
    """Checkpoints (and manifests) written before TrainConfig.device became torch_device hold "device"; resume
    compares only the settings that shape the run, so such a run continues."""
    make_trainer(synthetic, tmp_path, method="dsn", epochs=2).fit(stop_after_epoch=1)
    payload = read_checkpoint(tmp_path / "last.pt")
    saved = dict(payload["train_config"])
    payload["train_config"] = {("device" if k == "torch_device" else k): v for k, v in saved.items()}
    torch.save(payload, tmp_path / "last.pt")  # as the earlier release wrote it
    make_trainer(synthetic, tmp_path, method="dsn", epochs=2).fit(resume=True)
    after = read_checkpoint(tmp_path / "last.pt")
    assert after["epoch"] == 1 and after["train_config"]["torch_device"] == "cpu" and "device" not in after["train_config"]


@pytest.mark.slow
def test_resume_refuses_a_different_run(synthetic, tmp_path):
    make_trainer(synthetic, tmp_path, method="dsn", epochs=1).fit()
    with pytest.raises(CheckpointError, match="method: checkpoint has 'dsn'"):
        make_trainer(synthetic, tmp_path, method="self_distillation", epochs=1).fit(resume=True)


def test_resume_refuses_other_method_options(synthetic, tmp_path):
    """A default changed since the run began (say auxiliary_adv's merge_bn) would finish it as another method."""
    make_trainer(synthetic, tmp_path, epochs=2, max_steps_per_epoch=1).fit(stop_after_epoch=1)
    assert read_checkpoint(tmp_path / "last.pt")["method_options"]["alpha"] == 0.3
    with pytest.raises(CheckpointError, match="method option alpha: checkpoint has 0.3, expected 0.5"):
        make_trainer(synthetic, tmp_path, epochs=2, max_steps_per_epoch=1, options={"alpha": 0.5}).fit(resume=True)
    make_trainer(synthetic, tmp_path, epochs=2, max_steps_per_epoch=1).fit(resume=True)  # the same options: resumes


class LateSelection(DeeplySupervised):
    """DSN whose model is finished from epoch ``start`` on (as Auxiliary Training's period 2 finishes its model)."""

    def __init__(self, start: int) -> None:
        super().__init__()
        self._start = start

    def selection_start(self, epochs: int) -> int:
        return self._start

    def options(self):
        return DeeplySupervised().options()  # dsn's: a run it resumes began as dsn


def test_a_resume_forgets_a_checkpoint_selected_before_the_selection_start(synthetic, tmp_path):
    """A run begun under an earlier rule (its best from period 1) must not keep a checkpoint the method excludes."""
    first = make_trainer(synthetic, tmp_path, method="dsn", epochs=3, max_steps_per_epoch=2).fit(stop_after_epoch=1)
    assert first.best_epoch == 1
    result = make_trainer(synthetic, tmp_path, method=LateSelection(2), epochs=3, max_steps_per_epoch=2).fit(resume=True)
    assert result.best_epoch == 3 and read_checkpoint(tmp_path / "best.pt")["epoch"] == 2  # 0-based epoch 3


def test_a_run_resumed_with_other_options_than_its_manifest_began_with_is_refused(tmp_path):
    """A last.pt written before checkpoints recorded their method's options: the run's manifest tells."""
    from wxy_hw.studies.train import train_run
    from wxy_hw.utils import atomic_torch_save

    from helpers import TINY

    out, tiny = tmp_path / "run", {**TINY, "method": "dsn", "epochs": 2}
    with pytest.raises(TrainingPruned):
        train_run(**tiny, out=out, on_epoch=lambda epoch, val: True)
    payload = read_checkpoint(out / "last.pt")
    atomic_torch_save({k: v for k, v in payload.items() if k != "method_options"}, out / "last.pt")  # as before
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["config"]["method_options"]["exit_weight"] = 0.5  # as if dsn's default had been 0.5
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"exit_weight: began with 0\.5, now 1\.0\); move the run aside"):
        train_run(**tiny, out=out, resume=True)
    manifest["config"]["method_options"]["exit_weight"] = 1.0
    (out / "manifest.json").write_text(json.dumps(manifest))
    train_run(**tiny, out=out, resume=True)  # as it began: it continues


@pytest.mark.parametrize("start, selectable", [(1, {2, 3}), (2, {3}), (99, {3})])
def test_validation_selects_from_the_methods_selection_start(synthetic, tmp_path, start, selectable):
    """No checkpoint before the method's selection_start is selected, however well it validates; a start past the
    run leaves its last epoch."""
    result = make_trainer(synthetic, tmp_path, method=LateSelection(start), epochs=3, max_steps_per_epoch=2).fit()
    assert result.best_epoch in selectable
    rows = [r for r in result.history if r["split"] == "val"]
    final = str(max(int(r["exit"]) for r in rows if r["exit"].isdigit()))  # the deepest exit selects
    val = [r["accuracy"] for r in rows if r["exit"] == final]
    assert result.best_val == max(val[min(start, 2):])


class NaNOnCall(DeeplySupervised):
    """DSN whose loss turns NaN on the n-th call (a stand-in for a diverging run)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.calls, self.at = 0, at

    def options(self):
        return DeeplySupervised().options()  # the run it resumes is dsn's: the same options

    def forward(self, out, batch):
        self.calls += 1
        terms = super().forward(out, batch)
        if self.calls == self.at:
            terms["ce1"] = terms["ce1"] * float("nan")
        return terms


@pytest.mark.slow
def test_nan_loss_stops_with_epoch_and_step_and_keeps_last_checkpoint(synthetic, tmp_path):
    make_trainer(synthetic, tmp_path, method="dsn", epochs=3).fit(stop_after_epoch=2)
    before = (tmp_path / "last.pt").read_bytes()
    bad = make_trainer(synthetic, tmp_path, method="dsn", epochs=3)
    bad.method = NaNOnCall(at=2)
    with pytest.raises(NonFiniteLossError, match=r"epoch 3, step 2 .*last good checkpoint: .*last.pt .*--resume --lr"):
        bad.fit(resume=True)
    assert (tmp_path / "last.pt").read_bytes() == before
    assert read_checkpoint(tmp_path / "last.pt")["epoch"] == 1


def test_checkpoint_errors(synthetic, tmp_path):
    make_trainer(synthetic, tmp_path, method="baseline", epochs=1).fit()
    other = build_model("resnet18", 100, 1, 0.125, 28, multi_exit=False)
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "best.pt", expect=other)
    assert "arch: checkpoint has 'resnet8', expected 'resnet18'" in str(info.value)
    assert "num_classes: checkpoint has 10, expected 100" in str(info.value)
    (tmp_path / "broken.pt").write_bytes((tmp_path / "best.pt").read_bytes()[:500])
    with pytest.raises(CheckpointError, match="is truncated or damaged"):
        load_model(tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a wxy_hw checkpoint"):
        load_model(tmp_path / "foreign.pt")


def test_lr_schedules():
    cos = TrainConfig(epochs=4, schedule="cosine")
    assert [round(lr_factor(cos, e), 4) for e in range(4)] == [1.0, 0.8536, 0.5, 0.1464]
    step = TrainConfig(epochs=4, schedule="step", milestones=(0.5, 0.75))
    assert [lr_factor(step, e) for e in range(4)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")


@pytest.mark.slow
def test_gradient_norms_are_logged_when_asked(synthetic, tmp_path):
    make_trainer(synthetic, tmp_path, method="dsn", epochs=1, grad_norms_every=5).fit()
    lines = (tmp_path / "grad_norms.csv").read_text().splitlines()
    assert lines[0] == "step,layer,grad_norm" and len(lines) > 10 and "stem.0" in lines[1]


def test_a_resumed_run_keeps_the_gradient_norms_of_its_finished_epochs(synthetic, tmp_path):
    def rows(folder):
        lines = (folder / "grad_norms.csv").read_text().splitlines()[1:]
        return [(int(line.split(",")[0]), line.split(",")[1], float(line.split(",")[2])) for line in lines]

    kw = dict(method="dsn", epochs=2, max_steps_per_epoch=2, grad_norms_every=1)
    make_trainer(synthetic, tmp_path / "whole", **kw).fit()
    make_trainer(synthetic, tmp_path / "cut", **kw).fit(stop_after_epoch=1)
    first = rows(tmp_path / "cut")
    make_trainer(synthetic, tmp_path / "cut", **kw).fit(resume=True)
    whole, resumed = rows(tmp_path / "whole"), rows(tmp_path / "cut")
    assert resumed[:len(first)] == first and len(resumed) > len(first)  # the first epoch's rows survive the resume
    assert [r[:2] for r in resumed] == [r[:2] for r in whole]
    assert [r[2] for r in resumed] == pytest.approx([r[2] for r in whole], rel=1e-5)


def test_bad_torch_devices_are_clear_errors():
    from wxy_hw.utils import resolve_device

    with pytest.raises(ValueError, match="unknown torch device 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            resolve_device("cuda")


def test_narrow_models_avoid_the_channels_last_backward_crash(synthetic, tmp_path):
    """torch 2.13 CPU: a strided 1×1 conv with 8 input channels segfaults in NHWC backward (batch 3)."""
    from wxy_hw.train import channels_last_safe

    narrow = build_model("resnet8", 10, 1, 0.125, 28, multi_exit=False)
    assert not channels_last_safe(narrow, torch.device("cpu"))
    assert channels_last_safe(build_model("resnet8", 10, 1, 0.25, 28), torch.device("cpu"))
    trainer = make_trainer(synthetic, tmp_path, method="baseline", epochs=1, batch_size=3, max_steps_per_epoch=2)
    assert not trainer.channels_last
    trainer.fit()  # would abort the interpreter in channels_last


def test_init_starts_from_a_checkpoint_and_refuses_another_split(tmp_path):
    """--init: the fine-tuned run starts from the checkpoint's weights (hardware-aware fine-tuning of a digital
    model); a checkpoint of another seed or subset is refused in one line, before any work (its training images
    would overlap this run's validation split)."""
    from helpers import TINY
    from wxy_hw.studies.train import _assemble, plan_training, TrainRunConfig, train_run

    train_run(**TINY, epochs=1, out=tmp_path / "digital")
    ckpt = tmp_path / "digital" / "best.pt"
    settings = {k: v for k, v in TINY.items() if k != "progress"}
    conf = TrainRunConfig.make(None, **{**settings, "method": "hwa", "init": str(ckpt)})
    setup = _assemble(plan_training(conf, tmp_path / "hwa"), "cpu", progress=False)
    start = load_model(ckpt).state_dict()
    assert all(torch.equal(v, start[k]) for k, v in setup.model.state_dict().items())
    for change in ({"seed": 1}, {"subset": 32}):
        bad = TrainRunConfig.make(None, **{**settings, **change, "method": "hwa", "init": str(ckpt)})
        with pytest.raises(CheckpointError, match="overlap this run's validation split") as err:
            plan_training(bad, tmp_path / "bad")
        assert "\n" not in str(err.value) and not (tmp_path / "bad").exists()
