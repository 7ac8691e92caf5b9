"""Users' own networks: attach_exits, fit on DataLoaders, checkpoints, what stays digital, Conv1d."""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from wxy_hw.checkpoint import CheckpointError, load_model, save_checkpoint
from wxy_hw.models.evaluation import evaluate
from wxy_hw.hardware import analog_layers, deploy, weight_errors
from wxy_hw.inference.early_exit import early_exit_inference
from wxy_hw.models import AttachedExits, HookedExits, attach_exits, exit_costs, exit_path_macs
from wxy_hw.methods import Baseline
from wxy_hw.train import TrainingInterrupted, fit


class SmallCNN(nn.Module):
    """A user's network: functional activations, no stem/stages, logits out."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Residual(nn.Module):
    """A skip connection across the named point: cannot be cut there."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        return self.fc((h + self.b(h)).mean((2, 3)))


class Signal1d(nn.Module):
    """A Conv1d network for sequences, plus a Conv3d-free but Embedding-free plain head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 8, 5, padding=2)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).mean(-1))


@contextmanager
def nothing_left_behind():
    """Fail on our 'stay digital / stay float' warnings (others, e.g. Brevitas deprecations, pass)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r".*stay (digital|float)")
        yield


def blobs(n: int = 96, seed: int = 0) -> TensorDataset:
    """Four textures on noise, 12×12 grey (row stripes, column stripes, checkerboard, flat): learnable
    in a few steps by convolutions and global pooling."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    i = torch.arange(12)
    patterns = torch.stack([(i.view(-1, 1) % 2).expand(12, 12), (i.view(1, -1) % 2).expand(12, 12),
                            (i.view(-1, 1) + i.view(1, -1)) % 2, torch.zeros(12, 12, dtype=torch.long)]).float()
    x = 0.3 * torch.randn(n, 1, 12, 12, generator=g) + 1.5 * patterns[y].unsqueeze(1)
    return TensorDataset(x, y)


def loaders(n: int = 96) -> tuple[DataLoader, DataLoader]:
    return (DataLoader(blobs(n), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0)),
            DataLoader(blobs(48, seed=1), batch_size=48))


def test_attach_exits_cuts_a_sequential_backbone_and_matches_it():
    torch.manual_seed(0)
    net = SmallCNN().eval()
    m = attach_exits(net, ["conv2", "conv1"], 4, input_shape=(1, 12, 12)).eval()
    assert isinstance(m, AttachedExits) and m.num_exits == 3
    assert m.exit_names == ["conv1", "conv2", "output"]  # execution order, whatever order they were named in
    x = torch.randn(5, 1, 12, 12)
    out = m(x)
    assert torch.allclose(out.final, net(x), atol=1e-6)  # the backbone's own output is the deepest exit
    assert len({f.shape[1] for f in out.features}) == 1  # heads lifted to the deepest feature width
    for k in range(3):
        assert torch.allclose(m.forward_exit(x, k), out.logits[k], atol=1e-6)
    # per-exit cost grows with depth, and exit 1 does not pay for conv2/conv3
    macs = [c.macs for c in exit_costs(m)]
    assert macs[0] < macs[1] < macs[2]
    conv1_macs = 8 * 1 * 9 * 144
    assert macs[0] < conv1_macs + 20_000
    # real early exit: threshold 0 leaves everyone at exit 1 at exit 1's path cost
    r = early_exit_inference(m, x, [0.0, 0.0])
    assert r.exit_index.tolist() == [0] * 5 and r.macs[0] == exit_path_macs(m)[0]
    r = early_exit_inference(m, x, [1.1, 1.1])
    assert torch.equal(r.predictions, out.final.argmax(1))


def test_attach_exits_says_what_it_cannot_do():
    with pytest.raises(ValueError, match="has no submodule 'conv9'.*named_modules"):
        attach_exits(SmallCNN(), ["conv9"], 4, input_shape=(1, 12, 12))
    with pytest.raises(ValueError, match=r"returns \(2, 4\).*\(batch, 10\) logits"):
        attach_exits(SmallCNN(), ["conv1"], 10, input_shape=(1, 12, 12))
    with pytest.warns(UserWarning, match="cannot be cut.*skip connection.*compute the whole backbone"):
        m = attach_exits(Residual(), ["b"], 4, input_shape=(1, 8, 8))
    assert isinstance(m, HookedExits) and m.num_exits == 2
    x = torch.randn(3, 1, 8, 8)
    assert torch.allclose(m.forward_exit(x, 0), m(x).logits[0])
    with pytest.raises(ValueError, match="early exit needs a backbone cut into stages.*skip connection"):
        early_exit_inference(m, x, [0.5])


def test_fit_trains_a_plain_network_on_dataloaders_and_reloads(tmp_path):
    torch.manual_seed(0)
    net = SmallCNN()
    train, val = loaders()
    before = evaluate(net, val).final
    res = fit(net, "baseline", train, val, epochs=3, out=tmp_path, lr=0.2, progress=False, torch_device="cpu")
    assert res.best_path.exists() and res.best_val > max(before, 60.0)
    # the model now holds the validation-selected weights; the checkpoint reloads into a fresh network
    assert evaluate(net, val).final == pytest.approx(res.best_val)
    again = load_model(res.best_path, model=SmallCNN())
    assert evaluate(again, val).final == pytest.approx(res.best_val)
    with pytest.raises(CheckpointError, match="model=your_network"):
        load_model(res.best_path)
    with pytest.raises(CheckpointError, match=r"does not fit.*fc\.weight \(4, 16\) vs \(3, 16\)"):
        load_model(res.best_path, model=SmallCNN(classes=3))
    # a method that needs exits stops with one line on a single-exit network
    with pytest.raises(ValueError, match="'self_distillation' trains several exits.*attach_exits"):
        fit(SmallCNN(), "self_distillation", train, val, epochs=1, out=tmp_path / "sd")
    with pytest.raises(ValueError, match="one-shot iterator"):
        fit(SmallCNN(), "baseline", iter(train), val, epochs=1, out=tmp_path / "it")


@pytest.mark.slow
def test_attached_model_trains_with_self_distillation_and_round_trips(tmp_path):
    torch.manual_seed(0)
    m = attach_exits(SmallCNN(), ["conv1", "conv2"], 4, input_shape=(1, 12, 12))
    train, val = loaders()
    res = fit(m, "self_distillation", train, val, epochs=3, out=tmp_path, lr=0.2, progress=False, torch_device="cpu")
    assert res.best_val > 50.0
    acc = evaluate(m, val).accuracy
    # reload into the bare backbone (exits rebuilt from the record) and into an attached twin
    for target in (SmallCNN(), attach_exits(SmallCNN(), ["conv1", "conv2"], 4, input_shape=(1, 12, 12))):
        assert evaluate(load_model(res.best_path, model=target), val).accuracy == pytest.approx(acc)
    other = attach_exits(SmallCNN(), ["conv1"], 4, input_shape=(1, 12, 12))
    with pytest.raises(CheckpointError, match=r"exits: checkpoint has \['conv1', 'conv2'\], expected \['conv1'\]"):
        load_model(res.best_path, model=other)
    # quantized copies save and reload (the record re-quantizes the fresh network)
    from wxy_hw.models.quant import quantize_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize_model(m, {"weight_bits": 6, "act_bits": 8}, calibration=list(val)).eval()
        save_checkpoint(tmp_path / "q.pt", q)
        q2 = load_model(tmp_path / "q.pt", model=SmallCNN())
    x = next(iter(val))[0]
    assert torch.allclose(q2(x).final, q(x).final, atol=1e-5)


def test_deploy_and_quantize_name_what_they_leave_digital():
    model = nn.Sequential(nn.Conv3d(1, 2, 3), nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(1, 1, 4, 4, 4))
    with pytest.warns(UserWarning, match=r"deploy: 1 layer\(s\) stay digital.*0 \(Conv3d\)"):
        deploy(model, "reram", 0)
    with pytest.warns(UserWarning, match=r"quantize_model: 1 layer\(s\) stay float.*0 \(Conv3d\)"):
        from wxy_hw.models.quant import quantize_model

        quantize_model(model, {"weight_bits": 4, "act_bits": None})
    with nothing_left_behind():  # a network of supported layers converts without a word
        deploy(SmallCNN(), "reram", 0)


def test_quantize_model_quantizes_functional_relus_through_brevitas():
    from brevitas.nn import QuantReLU

    from wxy_hw.models.quant import quantize_model

    with nothing_left_behind():
        q = quantize_model(SmallCNN(), {"weight_bits": 4, "act_bits": 4})
    assert sum(isinstance(m, QuantReLU) for m in q.modules()) == 3  # torch.relu and two F.relu

    class Untraceable(SmallCNN):
        def forward(self, x):
            return super().forward(x) if x.sum() > -1e9 else x  # data-dependent branch

    with pytest.warns(UserWarning, match="stay float.*torch.fx cannot trace it"):
        quantize_model(Untraceable(), {"weight_bits": 4, "act_bits": 4})


def test_conv1d_is_deployed_with_noise():
    torch.manual_seed(0)
    net = Signal1d().eval()
    with nothing_left_behind():
        chip = deploy(net, "reram", seed=3)
    assert [type(m).__name__ for _, m in analog_layers(chip)] == ["AnalogConv1d", "AnalogLinear"]
    err = weight_errors(net, chip)
    assert 0.005 < err.std().item() < 0.2  # programmed with the device's noise, not left digital
    x = torch.randn(4, 2, 20)
    y, y_again = chip(x), chip(x)
    assert y.shape == (4, 3) and not torch.allclose(y, net(x)) and not torch.equal(y, y_again)  # read noise
    ideal = deploy(net, "ideal", seed=3)
    assert torch.equal(ideal(x), net(x))


@pytest.mark.parametrize("method", ["dsn", "self_distillation", "scan", "hwa", "qat", "self_distillation+hwa",
                                    "augment", "ada", "adv", "auxiliary"])
def test_every_method_trains_an_attached_model(tmp_path, method):
    torch.manual_seed(0)
    heads = "scan" if method == "scan" else "byot"
    m = attach_exits(SmallCNN(), ["conv1", "conv2"], 4, input_shape=(1, 12, 12), heads=heads)
    train, val = loaders(32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SCAN's transposed-conv attention stays float under qat: said, not tested here
        res = fit(m, method, train, val, epochs=1, out=tmp_path, lr=0.05, progress=False, torch_device="cpu",
                  max_steps_per_epoch=2)
    losses = [h["loss"] for h in res.history if h["split"] == "train"]
    assert len(losses) == 1 and losses[0] == losses[0] and res.best_path.exists()
    vals = [h for h in res.history if h["split"] == "val"]
    assert [h["exit"] for h in vals][:3] == ["conv1", "conv2", "output"]


def test_fit_resumes_bit_identically_and_hooked_exits_cost_the_whole_backbone(tmp_path):
    data = blobs(48)
    train, val = DataLoader(data, batch_size=16), DataLoader(blobs(32, seed=1), batch_size=32)

    def run(out, **kw):
        torch.manual_seed(0)
        net = SmallCNN()
        fit(net, "hwa", train, val, epochs=2, out=out, lr=0.1, progress=False, torch_device="cpu", **kw)
        return net

    straight = run(tmp_path / "a")
    run(tmp_path / "b", stop_after_epoch=1)
    resumed = run(tmp_path / "b", resume=True)
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    with pytest.warns(UserWarning, match="cannot be cut"):
        m = attach_exits(Residual(), ["b"], 4, input_shape=(1, 8, 8))
    costs = [c.macs for c in exit_costs(m)]
    assert costs[0] > costs[1]  # exit 1 pays for the whole backbone plus its own head
    with pytest.raises(ValueError, match="cut into stages.*use exit_costs"):
        exit_path_macs(m)


def test_conv1d_runs_the_tiled_adc_and_per_mvm_paths():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(40, 8, 9, padding=4), nn.ReLU(), nn.Conv1d(8, 4, 3)).eval()
    x = torch.randn(3, 40, 30)
    chip = deploy(net, "reram", 1, overrides={"array.rows": 64, "array.adc_bits": 6, "array.dac_bits": 6,
                                              "ir_drop.beta": 0.1}, read_noise_mode="per_mvm",
                  calibration=[torch.randn(8, 40, 30)])  # fixed converter ranges are calibrated at deployment
    assert chip[0].n_row_tiles == 6  # 360 inputs on 64-row arrays, each tile digitised on its own
    y, ref = chip(x), net(x)
    assert y.shape == ref.shape and torch.isfinite(y).all()
    assert 0.01 < ((y - ref).abs().mean() / ref.abs().mean()).item() < 1.0


def test_quantized_hook_read_exits_keep_their_exit_points():
    from brevitas.nn import QuantReLU

    from wxy_hw.models.quant import quantize_model

    class Res(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1))  # a container: fx would inline it
            self.b = nn.Conv2d(4, 4, 3, padding=1)
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.relu(self.a(x))
            return self.fc((h + self.b(h)).mean((2, 3)))

    with pytest.warns(UserWarning, match="cannot be cut"):
        m = attach_exits(Res(), ["a", "b"], 4, input_shape=(1, 8, 8))
    with nothing_left_behind():
        q = quantize_model(m, {"weight_bits": 8, "act_bits": 8}).eval()
    assert sum(isinstance(mod, QuantReLU) for mod in q.backbone.modules()) == 1
    x = torch.randn(2, 1, 8, 8)
    out, ref = q(x), m.eval()(x)
    assert len(out.logits) == 3 and all(torch.allclose(a, b, atol=0.1) for a, b in zip(out.logits, ref.logits))


def test_attached_model_on_aihwkit_agrees_with_the_native_engine():
    pytest.importorskip("aihwkit")
    from scipy.stats import ks_2samp

    from wxy_hw.hardware.aihwkit_backend import aihwkit_weight_errors, deploy_aihwkit

    torch.manual_seed(0)
    m = attach_exits(SmallCNN(), ["conv1", "conv2"], 4, input_shape=(1, 12, 12)).eval()
    analog = deploy_aihwkit(m, "reram", 1)  # reram as shipped, 16 levels
    assert len(analog(torch.randn(3, 1, 12, 12)).logits) == 3
    native, reference = weight_errors(m, deploy(m, "reram", 1)), aihwkit_weight_errors(m, analog)
    assert native.numel() == reference.numel()
    assert ks_2samp(native.numpy(), reference.numpy()).pvalue > 0.01


class LateBaseline(Baseline):
    """The baseline whose checkpoints may be selected only in the last epoch (as Auxiliary Training's period 2)."""

    def selection_start(self, epochs: int) -> int:
        return epochs - 1


def test_fit_stopped_before_the_selection_start_is_left_to_continue_not_finished(tmp_path):
    """No checkpoint may be selected yet: the run is interrupted (resumable), never finished with no best.pt."""
    train, val = loaders()
    kw = dict(epochs=3, out=tmp_path, progress=False, torch_device="cpu")
    with pytest.raises(TrainingInterrupted, match=r"before baseline's checkpoints may be selected \(from epoch 3\)"):
        fit(SmallCNN(), LateBaseline(), train, val, stop_after_epoch=1, **kw)
    assert not (tmp_path / "best.pt").exists() and (tmp_path / "last.pt").exists()
    assert fit(SmallCNN(), LateBaseline(), train, val, resume=True, **kw).best_epoch == 3
