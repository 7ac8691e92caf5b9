"""Per-chip BN recalibration: exact statistics, nothing else touched, and it helps a noisy chip."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from wxy_hw.data import make_loaders
from wxy_hw.models.evaluation import evaluate
from wxy_hw.hardware import deploy, recalibrate_bn


def test_statistics_are_the_exact_batch_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3, momentum=0.1)).eval()
    x = torch.randn(12, 1, 6, 6)
    pre = model[0](x)
    recalibrate_bn(model, x, batch_size=12)
    bn = model[1]
    assert torch.allclose(bn.running_mean, pre.mean((0, 2, 3)), atol=1e-6)
    assert torch.allclose(bn.running_var, pre.var((0, 2, 3), unbiased=True), atol=1e-5)
    assert bn.momentum == 0.1 and not model.training and not bn.training  # put back as found
    # Three equal batches of 4: the running mean is the mean over all 12 images all the same.
    recalibrate_bn(model, x, batch_size=4)
    assert torch.allclose(bn.running_mean, pre.mean((0, 2, 3)), atol=1e-6)
    assert int(bn.num_batches_tracked) == 3


def test_only_bn_layers_change_and_bad_input_is_one_line(trained_dsn):
    chip = deploy(trained_dsn, "reram", seed=1)
    before = {k: v.clone() for k, v in chip.state_dict().items()}
    trained = {k: v.clone() for k, v in trained_dsn.state_dict().items()}
    recalibrate_bn(chip, torch.randn(8, 1, 28, 28), batch_size=4)
    changed = {k for k, v in chip.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all(k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")
                           for k in changed)
    assert all(torch.equal(trained[k], v) for k, v in trained_dsn.state_dict().items())  # the trained model is untouched
    assert chip.deploy_info["bn_recalibrated_on"] == 8
    with pytest.raises(ValueError, match="N ≥ 2 images"):
        recalibrate_bn(chip, torch.randn(1, 1, 28, 28))
    with pytest.raises(ValueError, match="no batch-norm layer"):
        recalibrate_bn(nn.Linear(3, 2), torch.randn(4, 3))


def test_recalibration_recovers_accuracy_on_a_noisy_chip(trained_dsn, synthetic):
    loaders = make_loaders(synthetic, 100)
    unlabeled = next(iter(make_loaders(synthetic, 200)["train"]))[0]  # unlabeled training images
    digital = evaluate(trained_dsn, loaders["val"]).final
    plain, recal = [], []
    for seed in range(3):
        chip = deploy(trained_dsn, "reram", seed, t_inference=86400.0, noise_scale=2.0)
        plain.append(evaluate(chip, loaders["val"]).final)
        recal.append(evaluate(recalibrate_bn(chip, unlabeled), loaders["val"]).final)
    print(digital, plain, recal)
    assert sum(recal) / 3 > sum(plain) / 3 + 2.0


def test_sweep_adds_a_bn_recalibrated_series_on_the_same_chips(trained_dsn, synthetic):
    from wxy_hw.analysis.sweep import sweep_device
    from wxy_hw.hardware import load_device

    batches = list(make_loaders(synthetic, 100)["val"])[:1]
    images = next(iter(make_loaders(synthetic, 64)["train"]))[0]
    rows = sweep_device({"dsn": trained_dsn}, load_device("reram"), batches, scales=[2.0], times=[],
                        t_inference=86400.0, chips=2, bn_images=images)
    final = {(r["method"], r["chip"]): r["accuracy"] for r in rows if r["exit"] == "4"}
    assert set(final) == {(m, c) for m in ("dsn", "dsn + BN recal") for c in (0, 1)}  # same chip seeds
    assert any(final["dsn", c] != final["dsn + BN recal", c] for c in (0, 1))


def test_deploy_on_recalibrates_each_chip_and_studies_refuse_one_image(trained_dsn, tmp_path):
    from wxy_hw.studies.early_exit_energy import early_exit_run
    from wxy_hw.hardware import deploy_on
    from wxy_hw.studies.noise_sweep import noise_sweep_run

    images = torch.randn(16, 1, 28, 28)
    chip = deploy_on(trained_dsn, "reram", 3, bn_images=images)
    by_hand = recalibrate_bn(deploy(trained_dsn, "reram", 3), images)
    for (k, a), (_, b) in zip(chip.state_dict().items(), by_hand.state_dict().items()):
        assert torch.equal(a, b), k
    for run in (early_exit_run, noise_sweep_run):
        with pytest.raises(ValueError, match="--bn-recalibrate is a number of images"):
            run(device="reram", bn_recalibrate=1, checkpoints=[tmp_path / "none.pt"], out=tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before any work
