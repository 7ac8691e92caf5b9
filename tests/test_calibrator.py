"""Calibrator, discriminators, the adaptation trainers (calibrator, chip calibrator, DANN) and FFT helpers."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wxy_hw.adaptation import (Calibrated, entropy, finetune_chip, high_frequency_share, mean_spectrum,
                               train_calibrator, train_chip_calibrator, train_dann)
from wxy_hw.data import make_loaders
from wxy_hw.models.evaluation import evaluate
from wxy_hw.hardware import deploy
from wxy_hw.models.calibrator import Calibrator, FeatureDiscriminator, PixelDiscriminator, count_macs

ROOT = Path(__file__).resolve().parents[1]


def batches(data, split="train", n=4, bs=32):
    return [b for _, b in zip(range(n), make_loaders(data, bs, augment=False)[split])]


def test_untrained_calibrator_is_the_identity_and_bounded():
    cal = Calibrator(1, width=4, blocks=1, epsilon=0.3)
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(cal(x), x)  # zero-initialised output layer
    torch.nn.init.normal_(cal.head.weight, std=10.0)
    assert float((cal(x) - x).detach().abs().max()) <= 0.3 + 1e-6
    with pytest.raises(ValueError, match="epsilon > 0"):
        Calibrator(1, epsilon=0)


def test_discriminators_score_three_domains():
    assert PixelDiscriminator(1)(torch.randn(5, 1, 28, 28)).shape == (5, 3)
    assert FeatureDiscriminator(16)(torch.randn(5, 16)).shape == (5, 3)


def test_default_calibrator_size_is_what_the_docs_state():
    """docs/hardware.md and docs/results.md: 1,345 parameters; at the input's full resolution 13.3 % of the default
    classifier's MACs (stem stride 2), 3.6 % of a stride-1 one."""
    from wxy_hw.models import build_model

    cal = Calibrator(1, width=8, blocks=1)
    assert sum(p.numel() for p in cal.parameters()) == 1345
    for stem_stride, share in ((2, 0.133), (1, 0.036)):
        clf = build_model("resnet18", 10, 1, 0.25, 28, multi_exit=False, stem_stride=stem_stride)
        assert count_macs(cal, (1, 28, 28)) / count_macs(clf, (1, 28, 28)) == pytest.approx(share, abs=5e-4)


def test_calibrator_training_keeps_the_classifier_frozen(trained_dsn, synthetic):
    before = {k: v.clone() for k, v in trained_dsn.state_dict().items()}
    src, tgt = batches(synthetic), batches(synthetic)
    tgt = [(x + 0.8 * torch.randn_like(x), y) for x, y in tgt]  # a noisy target domain
    cal, history = train_calibrator(trained_dsn, src, tgt, epochs=2, width=4)
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in history)
    assert all(torch.equal(v, trained_dsn.state_dict()[k]) for k, v in before.items())
    assert all(p.requires_grad for p in trained_dsn.parameters())  # the caller's model is left as it was
    assert not torch.equal(cal(tgt[0][0]), tgt[0][0])  # it learned a correction


def test_chip_calibrator_moves_the_chip_toward_the_digital_model(trained_dsn, synthetic):
    data = batches(synthetic, n=6)
    test = batches(synthetic, "val", n=4)
    chip = deploy(trained_dsn, "subthreshold_cmos", seed=3, noise_scale=3.0)

    def agreement(model):
        with torch.no_grad():
            return float(sum((model(x).final.argmax(1) == trained_dsn(x).final.argmax(1)).float().sum()
                             for x, _ in test) / sum(len(y) for _, y in test))

    cal = train_chip_calibrator(trained_dsn, chip, data, epochs=4, width=4, lr=3e-3)
    assert agreement(Calibrated(cal, chip)) >= agreement(chip)
    tuned = finetune_chip(trained_dsn, chip, data, epochs=2)
    assert evaluate(tuned, test).n == sum(len(y) for _, y in test)


def test_dann_returns_an_adapted_copy(trained_dsn, synthetic):
    before = {k: v.clone() for k, v in trained_dsn.state_dict().items()}
    adapted = train_dann(trained_dsn, batches(synthetic), batches(synthetic), epochs=1)
    assert adapted is not trained_dsn and not adapted.training
    assert all(torch.equal(v, trained_dsn.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(v, adapted.state_dict()[k]) for k, v in before.items() if v.is_floating_point())


def test_spectrum_helpers():
    flat = torch.ones(4, 1, 16, 16)
    noisy = flat + torch.randn(4, 1, 16, 16)
    assert high_frequency_share(mean_spectrum([flat])) == pytest.approx(0.0, abs=1e-5)  # only DC
    assert high_frequency_share(mean_spectrum([noisy])) > 0.5
    uniform = torch.zeros(2, 10)
    assert float(entropy(uniform)) == pytest.approx(torch.log(torch.tensor(10.0)).item())


@pytest.mark.slow
def test_calibrator_adapt_cli_end_to_end(tmp_path):
    train = subprocess.run([sys.executable, str(ROOT / "experiments" / "train.py"), "--method", "baseline",
                            "--dataset", "synthetic", "--arch", "resnet8", "--width", "0.25", "--epochs", "1",
                            "--out", str(tmp_path / "m"), "--quiet"], capture_output=True, text=True, cwd=ROOT,
                           timeout=600)
    assert train.returncode == 0, train.stderr
    res = subprocess.run([sys.executable, str(ROOT / "experiments" / "calibrator_adapt.py"), "--checkpoints",
                          str(tmp_path / "m" / "best.pt"), "--source", "synthetic", "--target", "synthetic-C",
                          "--device", "subthreshold_cmos", "--chips", "2", "--epochs", "1", "--samples",
                          "64", "--out", str(tmp_path / "cal"), "--quiet"], capture_output=True, text=True, cwd=ROOT,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    for name in ("domain.csv", "chips.csv", "chips_cross.csv", "fft_spectra.png", "chip_cross.png", "table.md"):
        assert (tmp_path / "cal" / name).exists(), name
    assert "calibrator (classifier frozen)" in res.stdout and "BN recalibration" in res.stdout
    assert len((tmp_path / "cal" / "chips_cross.csv").read_text().splitlines()) - 1 == 4
    # the test images behind each accuracy, as reproduce reads them for its claims
    results = json.loads((tmp_path / "cal" / "manifest.json").read_text())["results"]
    assert results["chip_images"] == {"test": 64, "train": 64}
    assert 0 < results["domain_images"]["target test"] <= 64
    bad = subprocess.run([sys.executable, str(ROOT / "experiments" / "calibrator_adapt.py"), "--target", "none",
                          "--out", str(tmp_path / "bad")], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert bad.returncode == 2 and "nothing to do" in bad.stderr
