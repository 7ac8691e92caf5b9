"""Batched chips: K chips in one pass are the chips (and reads) of the one-at-a-time path."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from wxy_hw.models.evaluation import evaluate
from wxy_hw.hardware import deploy, evaluate_chips, load_device
from wxy_hw.hardware.batched import ChipBatchLayer, batch_blocker, chips_per_pass, deploy_chips
from wxy_hw.hardware.engine import AnalogMixin
from wxy_hw.models import attach_exits, build_model


class Tiny(nn.Module):
    """A user's network with a Conv1d and a Linear on a sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 6, 3, padding=1, padding_mode="circular")
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).mean(-1))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18", 4, 1, 0.125, 12).eval()


def _data(n: int = 24, classes: int = 4, shape=(1, 12, 12)) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)) for _ in range(2)]


@pytest.mark.parametrize("device,t,layout", [("reram", 3600.0, "loop"), ("reram", 3600.0, "stacked"),
                                             ("pcm", 86400.0, "stacked"), ("subthreshold_cmos", 1.0, "loop"),
                                             (load_device("reram", {"mapping.weight_bits": 8, "mapping.levels": 4}),
                                              3600.0, "loop")])  # bit-sliced float weights
def test_batched_chips_program_and_read_exactly_as_one_at_a_time(device, t, layout):
    model, seeds = _model(), [4, 11, 7]
    batch = deploy_chips(model, device, seeds, t_inference=t, noise_scale=1.5, layout=layout)
    layers = [m for m in batch.model.modules() if isinstance(m, ChipBatchLayer)]
    x = _data()[0][0]
    outs = [batch(x), batch(x)]  # two forwards: the read-noise streams advance alike
    for k, seed in enumerate(seeds):
        chip = deploy(model, device, seed, t_inference=t, noise_scale=1.5)
        twins = [m for m in chip.modules() if isinstance(m, AnalogMixin)]
        assert len(twins) == len(layers)
        for a, b in zip(twins, layers):
            assert torch.equal(a.weight, b.weight[k])  # programmed weights identical
        for rep in range(2):
            ref = chip(x)
            for a, b in zip(ref.logits, outs[rep][k].logits):
                if layout == "loop":  # the same ops on the same batch: bit-identical
                    assert torch.equal(a, b)
                else:  # convolutions on sub-batches: equal up to rounding
                    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)


def test_evaluate_chips_batched_matches_sequential_rows_and_chunks():
    model, data, seeds = _model(), _data(), [0, 1, 2, 3, 4]
    seq = [r for s in seeds for r in evaluate(deploy(model, "reram", s, t_inference=1.0), data).rows(chip=s)]
    for k in (None, 2, 5):  # memory-sized, chunked 2+2+1, all at once
        rows = evaluate_chips(model, "reram", data, seeds, t_inference=1.0, chip_batch=k)
        assert [(r["chip"], r["exit"]) for r in rows] == [(r["chip"], r["exit"]) for r in seq]
        for a, b in zip(rows, seq):
            assert a["accuracy"] == pytest.approx(b["accuracy"]) and a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_attached_exits_and_conv1d_models_batch_too():
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    attached = attach_exits(cnn, ["1"], 4, input_shape=(1, 12, 12)).eval()
    seq = nn.Sequential(Tiny()).eval()
    for model, data in ((attached, _data()), (seq, _data(classes=3, shape=(2, 16)))):
        ref = [r for s in (5, 6) for r in evaluate(deploy(model, "reram", s), data).rows(chip=s)]
        rows = evaluate_chips(model, "reram", data, [5, 6], chip_batch=2)
        assert [r["exit"] for r in rows] == [r["exit"] for r in ref]
        assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in ref], rel=1e-5)


def test_what_cannot_be_batched_runs_one_chip_at_a_time():
    model, data = _model(), _data()
    adc = load_device("reram", {"array.adc_bits": 6, "array.dac_bits": 6})
    assert "converters" in batch_blocker(adc)
    assert "BN" in batch_blocker(load_device("reram"), bn_images=torch.zeros(2))
    assert "per_mvm" in batch_blocker(load_device("reram"), "per_mvm")
    with pytest.raises(ValueError, match="one at a time"):
        deploy_chips(model, adc, [0, 1])
    calib = [data[0][0]]
    rows = evaluate_chips(model, adc, data, [0, 1], calibration=calib)
    ref = [r for s in (0, 1) for r in evaluate(deploy(model, adc, s, calibration=calib), data).rows(chip=s)]
    assert rows == ref
    # BN recalibration (per-chip statistics) still works through evaluate_chips
    bn = evaluate_chips(model, "reram", data, [0], bn_images=data[1][0])
    assert len(bn) == len(ref) // 2


def test_chips_per_pass_follows_the_memory_budget():
    model, x = _model(), _data()[0][0]
    assert chips_per_pass(model, x, max_memory=1) == 1
    small, large = chips_per_pass(model, x, 64 << 20), chips_per_pass(model, x, 1 << 30)
    assert 1 <= small < large


@pytest.mark.slow
def test_quantized_models_batch_like_one_at_a_time():
    """Brevitas layers (bit-sliced on reram, their own grid on subthreshold CMOS) batch too."""
    from wxy_hw.models.quant import QuantConfig, quantize_model

    torch.manual_seed(0)
    model = quantize_model(build_model("resnet8", 4, 1, 0.125, 12), QuantConfig(weight_bits=2, act_bits=8)).eval()
    data = _data(8)
    for device in ("reram", "subthreshold_cmos"):
        rows = evaluate_chips(model, device, data, [0, 1])
        seq = [r for s in (0, 1) for r in evaluate(deploy(model, device, s), data).rows(chip=s)]
        assert [(r["chip"], r["exit"]) for r in rows] == [(r["chip"], r["exit"]) for r in seq]
        for a, b in zip(rows, seq):
            assert a["accuracy"] == b["accuracy"] and a["loss"] == pytest.approx(b["loss"], rel=1e-6)
