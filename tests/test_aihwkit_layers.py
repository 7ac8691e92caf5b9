"""The aihwkit backend on every layer the native engine maps: Conv1d, and layers larger than one array."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

pytest.importorskip("aihwkit")

from wxy_hw.hardware import available_devices, deploy, load_device, weight_errors
from wxy_hw.hardware.aihwkit_backend import (AihwkitUnavailable, aihwkit_weight_errors,
                                             deploy_aihwkit)
from wxy_hw.hardware.montecarlo import evaluate_chips, summarize_chips
from wxy_hw.hardware.physics import tile_ids
from wxy_hw.models import attach_exits

CHIPS = 8


class Seq1d(nn.Module):
    """A hand-written 1-D CNN; conv2 has 48 × 7 = 336 input rows: two tiles on a 256-row array."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1, self.act1 = nn.Conv1d(2, 48, 5, padding=2), nn.ReLU()
        self.conv2, self.act2 = nn.Conv1d(48, 24, 7, padding=3), nn.ReLU()
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(24, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act2(self.conv2(self.act1(self.conv1(x))))).flatten(1))


def tones(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-channel sequences of length 32: class k is a sine of k + 1 cycles (random phase) in noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    t = torch.linspace(0, 2 * math.pi, 32)
    phase = 2 * math.pi * torch.rand(n, 2, 1, generator=g)
    x = torch.sin((y + 1).view(-1, 1, 1) * t + phase) + torch.randn(n, 2, 32, generator=g)
    return x, y


@pytest.fixture(scope="module")
def seq_model() -> nn.Module:
    torch.manual_seed(0)
    m = attach_exits(Seq1d(), ["act1"], 4, input_shape=(2, 32))
    x, y = tones(256, seed=0)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    for step in range(80):  # digital accuracy ≈ 81 % (exit act1) and 89 % (output): the chips lose a few points
        idx = torch.arange(step * 64, step * 64 + 64) % 256
        loss = sum(F.cross_entropy(logits, y[idx]) for logits in m(x[idx]).logits)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


@pytest.fixture(scope="module")
def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = tones(64, seed=1)
    return [(x[:32], y[:32]), (x[32:], y[32:])]


def _mean_se(v: list[float]) -> tuple[float, float]:
    t = torch.tensor(v, dtype=torch.float64)
    return t.mean().item(), (t.std() / math.sqrt(len(v))).item()


@pytest.mark.parametrize("device", ["reram", "pcm"])
def test_conv1d_cnn_accuracy_agrees_with_the_native_engine(seq_model, batches, device):
    """evaluate_chips(backend="aihwkit") at the device's defaults, no overrides, the same chips on both backends:
    per exit, the accuracy means agree within 4 standard errors of their difference plus two test inputs.
    (Programming is seeded; aihwkit's C++ read noise is not, hence an interval, wide enough not to fail by chance.)"""
    rows = {b: evaluate_chips(seq_model, device, batches, range(CHIPS), backend=b) for b in ("native", "aihwkit")}
    for exit_name in ("act1", "output"):
        acc = {b: [r["accuracy"] for r in v if r["exit"] == exit_name] for b, v in rows.items()}
        assert len(acc["native"]) == len(acc["aihwkit"]) == CHIPS
        (m_n, se_n), (m_a, se_a) = _mean_se(acc["native"]), _mean_se(acc["aihwkit"])
        assert abs(m_n - m_a) <= 4 * math.hypot(se_n, se_a) + 200 / 64, (device, exit_name, acc)
    summary = summarize_chips(rows["aihwkit"])
    assert [r["exit"] for r in summary] == ["act1", "output", "ensemble"] and all(r["chips"] == CHIPS for r in summary)


@pytest.mark.parametrize("device,t", [("reram", 1.0), ("pcm", 86400.0)])
def test_conv1d_output_and_weight_errors_agree(seq_model, batches, device, t):
    """Per chip, the final logits' relative error against the digital model: means over chips agree within
    4 standard errors plus 10 % of the error; the weight-error spreads within 10 % where drift compensation
    is off (aihwkit compensates on the tile outputs, the native engine in the weights)."""
    x = torch.cat([b[0] for b in batches])
    ref = seq_model(x).final
    err: dict[str, list[float]] = {"native": [], "aihwkit": []}
    spread: dict[str, list[float]] = {"native": [], "aihwkit": []}
    for seed in range(CHIPS):
        native = deploy(seq_model, device, seed, t_inference=t)
        analog = deploy_aihwkit(seq_model, device, seed, t_inference=t)
        for name, chip, w in (("native", native, weight_errors(seq_model, native)),
                              ("aihwkit", analog, aihwkit_weight_errors(seq_model, analog))):
            err[name].append(((chip(x).final - ref).norm() / ref.norm()).item())
            spread[name].append(w.std().item())
    (m_n, se_n), (m_a, se_a) = _mean_se(err["native"]), _mean_se(err["aihwkit"])
    assert abs(m_n - m_a) <= 4 * math.hypot(se_n, se_a) + 0.1 * m_n, (device, err)
    if not load_device(device).noise["drift_compensation"]:
        assert sum(spread["aihwkit"]) == pytest.approx(sum(spread["native"]), rel=0.1), (device, spread)


def test_conv1d_without_noise_is_the_same_chip_on_both_backends(seq_model, batches):
    """reram's 16 levels, noise off: the same tile split gives the same per-tile |W|max, so the same rounded
    weights and outputs (a different split would round differently)."""
    spec = load_device("reram", {"noise.read_noise": 0.0})
    native, analog = deploy(seq_model, spec, noise_scale=0.0), deploy_aihwkit(seq_model, spec, noise_scale=0.0)
    w_native, w_aihwkit = weight_errors(seq_model, native), aihwkit_weight_errors(seq_model, analog)
    assert w_native.abs().max() > 1e-3 and torch.allclose(w_native, w_aihwkit, atol=1e-5)
    x = batches[0][0]
    for a, b in zip(analog(x).logits, native(x).logits):
        assert torch.allclose(a, b, atol=1e-4)
    conv2 = [m.analog_module for m in analog.modules() if type(m).__name__ == "AnalogConv2d"][1]
    assert conv2.in_sizes == [168, 168]  # 336 rows in two balanced tiles, as the native engine splits them


@pytest.mark.parametrize("device", available_devices())
def test_wide_conv2d_runs_on_every_shipped_device(device):
    """in_channels × k × k = 360 > rows (256, subthreshold CMOS 128), 300 outputs > cols: split over tiles by
    default, as the native engine splits it; the noise-free devices read the same weights on both backends."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(40, 300, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(300, 3)).eval()
    x = torch.randn(4, 40, 4, 4)
    analog = deploy_aihwkit(net, device, seed=0)
    native = deploy(net, device, seed=0)
    rows, cols = (int(load_device(device).array[k]) for k in ("rows", "cols"))
    tile = next(m for m in analog.modules() if type(m).__name__ == "AnalogConv2d").analog_module
    assert len(tile.in_sizes) == math.ceil(360 / rows) and len(tile.out_sizes) == math.ceil(300 / cols)
    # the native engine's tiles (physics.tile_ids), balanced the same way
    assert tile.in_sizes == torch.bincount(tile_ids(360, rows)).tolist()
    assert tile.out_sizes == torch.bincount(tile_ids(300, cols)).tolist()
    y = analog(x)
    assert y.shape == (4, 3) and torch.isfinite(y).all()
    if load_device(device).aihwkit["noise_model"] == "none":
        assert torch.allclose(aihwkit_weight_errors(net, analog), weight_errors(net, native), atol=1e-6)


def test_padding_aihwkit_lacks_is_applied_digitally():
    """'same' (even kernel: asymmetric) and reflect / circular padding: aihwkit gives the digital outputs on
    the ideal device, and the native engine's on leveled reram without noise."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(3, 8, 4, padding="same", padding_mode="reflect"), nn.ReLU(),
                        nn.Conv1d(8, 4, 3, stride=2, dilation=2, padding=2, padding_mode="circular")).eval()
    x = torch.randn(2, 3, 17)
    assert torch.allclose(deploy_aihwkit(net, "ideal")(x), net(x), atol=1e-5)
    spec = load_device("reram", {"noise.read_noise": 0.0})
    assert torch.allclose(deploy_aihwkit(net, spec, noise_scale=0.0)(x), deploy(net, spec, noise_scale=0.0)(x), atol=1e-5)
    one = torch.randn(3, 17)  # an unbatched sequence, as nn.Conv1d takes it
    assert torch.allclose(deploy_aihwkit(net, "ideal")(one), net(one), atol=1e-5)


def test_what_aihwkit_cannot_express_is_one_line():
    class ScaledLinear(nn.Linear):  # a subclass aihwkit's conversion map (exact types) would leave digital
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    with pytest.raises(AihwkitUnavailable, match=r"not subclasses such as 1 \(ScaledLinear\); use --backend native"):
        deploy_aihwkit(nn.Sequential(nn.Linear(4, 4), ScaledLinear(4, 2)), "reram")
    # Conv3d stays digital on both backends, said in one warning, not converted half-way
    net = nn.Sequential(nn.Conv3d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2)).eval()
    with pytest.warns(UserWarning, match=r"stay digital.*0 \(Conv3d\)"):
        analog = deploy_aihwkit(net, "ideal")
    x = torch.randn(2, 1, 3, 3, 3)
    assert torch.allclose(analog(x), net(x), atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert type(deploy(net, "ideal")[0]) is nn.Conv3d
