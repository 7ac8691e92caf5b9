"""Backbones, exit heads, MultiExitNet output contract and per-exit costs."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from wxy_hw.models import MultiExitOutput, available_archs, build_model, exit_costs, model_from_config

from helpers import nonempty


@pytest.mark.parametrize("arch", available_archs())
def test_every_arch_builds_and_returns_four_exits(arch):
    width = 0.0625 if arch in ("resnet101", "resnet152") else 0.125
    model = build_model(arch, num_classes=7, in_channels=3, width=width, image_size=32).eval()
    out = model(torch.randn(2, 3, 32, 32))
    assert isinstance(out, MultiExitOutput) and len(out) == 4
    assert all(z.shape == (2, 7) for z in out.logits)
    deep = model.stage_channels[-1]
    assert all(f.shape == (2, deep) for f in nonempty(out.features))  # shallow features match the deepest width (hint)
    assert out.ensemble.shape == (2, 7) and torch.allclose(out.ensemble, torch.stack(out.logits).mean(0))


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 1), (28, 3), (32, 3)])
def test_input_geometries(size, channels):
    model = build_model("resnet18", 100, channels, 0.125, size).eval()
    out = model(torch.randn(3, channels, size, size))
    assert out.final.shape == (3, 100) and model.stage_sizes[-1] in (4, 3)


def test_single_exit_model_is_the_plain_network():
    model = build_model("resnet18", 10, 1, 0.125, 28, multi_exit=False)
    assert model.num_exits == 1 and len(model(torch.randn(1, 1, 28, 28))) == 1
    multi = build_model("resnet18", 10, 1, 0.125, 28)
    backbone = lambda m: sum(p.numel() for n, p in m.named_parameters() if not n.startswith("heads"))  # noqa: E731
    assert backbone(model) == backbone(multi)


def test_forward_exit_matches_full_forward(tiny_model):
    tiny_model.eval()
    x = torch.randn(4, 1, 28, 28)
    out = tiny_model(x)
    for k in range(tiny_model.num_exits):
        assert torch.allclose(tiny_model.forward_exit(x, k), out.logits[k], atol=1e-6)


def test_config_round_trip(tiny_model):
    clone = model_from_config(tiny_model.config)
    clone.load_state_dict(tiny_model.state_dict())
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(clone.eval()(x).final, tiny_model.eval()(x).final)


def _macs_by_hooks(model, k: int) -> int:
    """Independent MAC count: forward hooks on every Conv2d / Linear along exit k's path."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            total += out.numel() * (mod.in_channels // mod.groups) * kh * kw
        else:
            total += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval().forward_exit(torch.zeros(1, model.config["in_channels"], 28, 28), k)
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("arch", ["resnet8", "resnet50", "vgg11"])
def test_exit_costs_match_an_independent_count_and_grow_with_depth(arch):
    model = build_model(arch, 10, 1, 0.125, 28)
    costs = exit_costs(model)
    assert [c.macs for c in costs] == [_macs_by_hooks(model, k) for k in range(4)]
    backbone_params = [sum(p.numel() for m in model.exit_modules(k)[:-1] for p in m.parameters()) for k in range(4)]
    assert backbone_params == sorted(backbone_params)
    assert costs[-1].params == sum(p.numel() for n, p in model.named_parameters()
                                   if not n.startswith("heads.") or n.startswith("heads.3."))
    head_macs = [c.macs - _macs_by_hooks(model, 3) for c in costs]  # shallow exits cost less than the full net
    assert all(m < 0 for m in head_macs[:2])


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="unknown architecture 'resnet19'"):
        build_model("resnet19")
    with pytest.raises(ValueError, match="deepest"):
        build_model("resnet8", exit_stages=(0, 1))
    with pytest.raises(ValueError, match="in_channels"):
        build_model("resnet8", in_channels=2)
    with pytest.raises(ValueError, match="width"):
        build_model("resnet8", width=0)


def test_stem_stride_two_halves_every_stage_and_round_trips(tmp_path):
    from wxy_hw.checkpoint import load_model, save_checkpoint
    from wxy_hw.inference import early_exit_inference
    from wxy_hw.models import exit_costs

    torch.manual_seed(0)
    plain, strided = build_model("resnet18", 10, 1, 0.25, 28), build_model("resnet18", 10, 1, 0.25, 28, stem_stride=2)
    assert "stem_stride" not in plain.config and strided.config["stem_stride"] == 2
    assert strided.stage_sizes == [(s + 1) // 2 for s in plain.stage_sizes]  # 28, 14, 7, 4 → 14, 7, 4, 2
    # stage 1's 3×3 convs run on a quarter of the positions: the deepest exit costs well under half
    assert exit_costs(strided)[-1].macs < 0.5 * exit_costs(plain)[-1].macs
    x = torch.randn(6, 1, 28, 28)
    strided.eval()
    loaded = load_model(save_checkpoint(tmp_path / "s2.pt", strided))
    assert loaded.config == strided.config
    for a, b in zip(strided(x).logits, loaded(x).logits):
        assert torch.equal(a, b)
    result = early_exit_inference(loaded, x, [2.0, 2.0, 2.0])  # thresholds above 1: all reach the last exit
    assert result.exit_index.tolist() == [3] * 6
    with pytest.raises(ValueError, match="ResNet option"):
        build_model("vgg11", 10, 1, 0.25, 28, stem_stride=2)
