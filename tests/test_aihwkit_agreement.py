"""The native engine against aihwkit, the reference: weight-error distributions and accuracy."""
from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import ks_2samp

pytest.importorskip("aihwkit")

from wxy_hw.data import make_loaders
from wxy_hw.models.evaluation import evaluate
from wxy_hw.hardware import DeviceSpecError, deploy, load_device, weight_errors
from wxy_hw.hardware.aihwkit_backend import (AihwkitUnavailable, aihwkit_weight_errors,
                                             deploy_aihwkit)

# Continuous variants isolate the noise models; the shipped devices (reram: 16 levels) are compared too.
CONTINUOUS = {"mapping.levels": 0}


@pytest.fixture(scope="module")
def trained(trained_dsn):
    return trained_dsn


@pytest.mark.parametrize("device,t,extra", [
    ("reram", 1.0, {}),
    ("reram", 86400.0, {}),
    ("subthreshold_cmos", 1.0, {}),
    # aihwkit compensates drift on the tile outputs, not in the weights: compare raw drifted weights.
    ("pcm", 86400.0, {"noise.drift_compensation": False}),
])
def test_weight_error_distributions_pass_ks(trained, device, t, extra):
    spec = load_device(device, {**CONTINUOUS, **extra})
    native = weight_errors(trained, deploy(trained, spec, seed=1, t_inference=t))
    reference = aihwkit_weight_errors(trained, deploy_aihwkit(trained, spec, seed=1, t_inference=t))
    assert native.numel() == reference.numel()
    assert ks_2samp(native.numpy(), reference.numpy()).pvalue > 0.01
    assert native.std().item() == pytest.approx(reference.std().item(), rel=0.05)


@pytest.mark.parametrize("t", [1.0, 86400.0])
def test_reram_at_its_defaults_passes_ks(trained, t):
    """reram exactly as shipped (16 conductance levels): aihwkit programs the same leveled targets."""
    spec = load_device("reram")
    assert spec.mapping["levels"] == 16
    native = weight_errors(trained, deploy(trained, spec, seed=1, t_inference=t))
    reference = aihwkit_weight_errors(trained, deploy_aihwkit(trained, spec, seed=1, t_inference=t))
    assert ks_2samp(native.numpy(), reference.numpy()).pvalue > 0.01
    assert native.std().item() == pytest.approx(reference.std().item(), rel=0.05)


def test_reram_levels_are_the_same_targets_without_noise(trained):
    """Noise off, only the level rounding remains: both backends hold the same weights."""
    spec = load_device("reram", {"noise.read_noise": 0.0})
    native = weight_errors(trained, deploy(trained, spec, noise_scale=0.0))
    reference = aihwkit_weight_errors(trained, deploy_aihwkit(trained, spec, noise_scale=0.0))
    assert native.abs().max() > 1e-3  # the levels really round (16 levels: half a step is 1/30)
    assert torch.allclose(native, reference, atol=1e-5)


@pytest.mark.parametrize("device,t", [("reram", 1.0), ("pcm", 86400.0)])
@pytest.mark.slow
def test_accuracy_means_agree_within_two_standard_errors(trained, synthetic, device, t):
    spec = load_device(device, CONTINUOUS)
    batches = list(make_loaders(synthetic, 100)["test"])
    accs = {"native": [], "aihwkit": []}
    for seed in range(10):
        accs["native"].append(evaluate(deploy(trained, spec, seed, t_inference=t), batches).final)
        accs["aihwkit"].append(evaluate(deploy_aihwkit(trained, spec, seed, t_inference=t), batches).final)
    mean = {k: sum(v) / len(v) for k, v in accs.items()}
    se = {k: torch.tensor(v).std().item() / math.sqrt(len(v)) for k, v in accs.items()}
    gap = abs(mean["native"] - mean["aihwkit"])
    assert gap <= 2 * math.sqrt(se["native"] ** 2 + se["aihwkit"] ** 2) + 0.5, (mean, se)


def test_aihwkit_zero_noise_matches_digital(trained, synthetic):
    x, _ = next(iter(make_loaders(synthetic, 16)["test"]))
    spec = load_device("reram", {**CONTINUOUS, "noise.read_noise": 0.0})
    analog = deploy_aihwkit(trained, spec, noise_scale=0.0)
    for a, b in zip(analog(x).logits, trained(x).logits):
        assert torch.allclose(a, b, atol=1e-4)


def test_aihwkit_limits_are_clear_errors(trained):
    with pytest.raises(DeviceSpecError, match=r"only has data at t_inference.*--backend native"):
        deploy_aihwkit(trained, load_device("reram", CONTINUOUS), t_inference=3600.0)
    with pytest.raises(AihwkitUnavailable, match="noise.stuck_at_lrs.*--backend native"):
        deploy_aihwkit(trained, load_device("reram", {"noise.stuck_at_lrs": 0.01}))
    sliced = {"mapping.weight_bits": 8, "mapping.levels": 4, "array.parallel_rows": 32}
    with pytest.raises(AihwkitUnavailable, match="mapping.weight_bits .*array.parallel_rows .*--backend native"):
        deploy_aihwkit(trained, load_device("reram", sliced))
    depthwise = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, groups=4), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    with pytest.raises(AihwkitUnavailable, match=r"grouped / depthwise ones: 0 \(groups=4\); use --backend native"):
        deploy_aihwkit(depthwise, "reram")


@pytest.mark.slow
def test_every_shipped_device_runs_on_aihwkit_at_its_defaults(trained, synthetic):
    from wxy_hw.hardware import available_devices

    x, _ = next(iter(make_loaders(synthetic, 16)["test"]))
    for device in available_devices():
        analog = deploy_aihwkit(trained, device, seed=0)
        assert torch.isfinite(analog(x).final).all(), device
    # noise-free devices: ideal is the digital model; digital_int8's 128 levels are the native engine's
    for a, b in zip(deploy_aihwkit(trained, "ideal")(x).logits, trained(x).logits):
        assert torch.allclose(a, b, atol=1e-4)
    native = weight_errors(trained, deploy(trained, "digital_int8"))
    reference = aihwkit_weight_errors(trained, deploy_aihwkit(trained, "digital_int8"))
    assert native.abs().max() > 0 and torch.allclose(native, reference, atol=1e-6)
