"""Brevitas quantization: reference fake-quant, PTQ, QAT, checkpoints, and deployment of quantized weights."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

pytest.importorskip("brevitas")

from wxy_hw.checkpoint import load_model, save_checkpoint
from wxy_hw.data import make_loaders
from wxy_hw.models.evaluation import evaluate
from wxy_hw.hardware import analog_layers, deploy, load_device
from wxy_hw.models.quant import QuantConfig, quantize_model, quantized_weight
from wxy_hw.methods import build_method
from wxy_hw.models import build_model

from helpers import nonempty


@pytest.fixture(scope="module")
def trained(trained_dsn):
    return trained_dsn


@pytest.mark.parametrize("bits,per_channel", [(8, False), (4, False), (3, True)])
def test_brevitas_conv_equals_reference_fake_quant(bits, per_channel):
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    q = quantize_model(nn.Sequential(conv), QuantConfig(bits, None, per_channel))[0]
    x = torch.randn(2, 3, 6, 6)
    w = conv.weight.detach()
    top = 2 ** (bits - 1) - 1
    amax = w.abs().amax(dim=(1, 2, 3), keepdim=True) if per_channel else w.abs().max()
    scale = amax / top
    ref = F.conv2d(x, torch.clamp(torch.round(w / scale), -top - 1, top) * scale, conv.bias, padding=1)
    assert torch.allclose(q(x), ref, atol=1e-6)
    assert torch.allclose(quantized_weight(q), torch.clamp(torch.round(w / scale), -top - 1, top) * scale, atol=1e-7)


def test_ptq_8bit_loses_less_than_a_point_and_never_mutates(trained, synthetic):
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    loaders = make_loaders(synthetic, 100)
    q = quantize_model(trained, QuantConfig(8, 8), calibration=list(loaders["val"])[:2])
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    assert q.config["quant"] == {"weight_bits": 8, "act_bits": 8, "per_channel": False}
    float_acc = evaluate(trained, loaders["test"]).final
    assert evaluate(q, loaders["test"]).final > float_acc - 1.0
    assert evaluate(quantize_model(trained, QuantConfig(2, 8), list(loaders["val"])[:2]), loaders["test"]).final < float_acc


@pytest.mark.parametrize("bad", [0, 33, 4.5, True, "8"])
def test_bad_bit_widths_are_clear_errors(bad):
    with pytest.raises(ValueError, match="weight_bits must be an integer from 2 to 8"):
        QuantConfig(weight_bits=bad)
    with pytest.raises(ValueError, match="act_bits must be an integer from 2 to 8"):
        build_method("qat", act_bits=bad)


@pytest.mark.slow
def test_quantized_checkpoint_round_trip(trained, synthetic, tmp_path):
    loaders = make_loaders(synthetic, 50)
    q = quantize_model(trained, QuantConfig(4, 6, True), calibration=list(loaders["val"])[:1])
    save_checkpoint(tmp_path / "q.pt", q)
    back = load_model(tmp_path / "q.pt")
    x, _ = next(iter(loaders["test"]))
    assert torch.equal(back(x).final, q(x).final)


def test_qat_composes_and_swaps_in_quantized_layers():
    method = build_method("self_distillation+qat", weight_bits=3)
    assert method.name == "self_distillation+qat" and method.multi_exit
    model = method.prepare_model(build_model("resnet8", 10, 1, 0.125, 28))
    assert type(model.stages[0][0].conv1).__name__ == "QuantConv2d" and model.config["quant"]["weight_bits"] == 3


def test_devices_program_the_quantized_weights(trained):
    q = quantize_model(trained, QuantConfig(4, None))
    x = torch.randn(4, 1, 28, 28)
    assert all(torch.equal(a, b) for a, b in nonempty(zip(deploy(q, "ideal")(x).logits, q(x).logits, strict=True)))
    spec = load_device("reram", {"mapping.levels": 0})
    chip = deploy(q, spec, noise_scale=0.0)
    for (_, src), (_, dst) in zip(analog_layers(q), analog_layers(chip)):
        assert torch.allclose(dst.weight, quantized_weight(src), atol=1e-6)


@pytest.mark.parametrize("fmt", ["qcdq", "qonnx"])
@pytest.mark.slow
def test_onnx_export(trained, tmp_path, fmt):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from wxy_hw.models.quant import export_onnx

    q = quantize_model(trained, QuantConfig(4, 8), calibration=[(torch.randn(16, 1, 28, 28), None)])
    path = export_onnx(q, str(tmp_path / f"model_{fmt}.onnx"), fmt=fmt)
    graph = onnx.load(path).graph
    assert len(graph.output) == 4
    ops = {n.op_type for n in graph.node}
    assert ("QuantizeLinear" in ops) if fmt == "qcdq" else ("Quant" in ops)
    if fmt == "qcdq":
        ort = pytest.importorskip("onnxruntime")
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        for _ in range(3):  # exported with a static batch of 1
            x = torch.randn(1, 1, 28, 28)
            got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
            for g, w in zip(got, q(x).logits):  # rounding ties may differ at a few activations
                assert torch.allclose(torch.from_numpy(g), w.detach(), atol=0.05 * w.abs().max().item() + 1e-4)


def test_bit_slicing_reconstructs_quantized_weights_and_splits_noise():
    from wxy_hw.hardware.physics import slicing

    assert slicing(8, 16) == (4, 2) and slicing(4, 16) == (4, 1) and slicing(6, 4) == (2, 3)
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Linear(64, 16))
    q = quantize_model(lin, QuantConfig(8, None))
    quiet = load_device("reram", {"noise.programming": "none", "noise.read_noise": 0.0, "noise.drift": "none"})
    assert torch.allclose(deploy(q, quiet)[0].weight, quantized_weight(q[0]), atol=1e-6)  # 2 slices of 4 bits
    # programming noise on the low slice is worth 1/16 of the high slice's: relative error of an
    # 8-bit (two-slice) weight stays below that of a 4-bit (one-slice) weight on the same device
    errs = {}
    for bits in (8, 4):
        qb = quantize_model(lin, QuantConfig(bits, None))
        ref = quantized_weight(qb[0])
        errs[bits] = torch.stack([(deploy(qb, "reram", seed=s)[0].weight - ref).std() / ref.abs().max()
                                  for s in range(5)]).mean().item()
    assert errs[8] < errs[4]
