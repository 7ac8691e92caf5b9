"""Flatness analyses: weight-noise loss, Hessian eigenvalue, 1-D landscape, gradient monitor."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from wxy_hw.analysis import (GradientMonitor, expected_loss_increase, filter_normalized_direction,
                             gaussian_weight_noise_loss, loss_landscape_1d, top_hessian_eigenvalue, weight_layers)
from wxy_hw.analysis.flatness import _generator, _noisy
from wxy_hw.data import make_loaders
from wxy_hw.models.evaluation import evaluate
from wxy_hw.models import MultiExitOutput

from helpers import nonempty


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these models are tiny, and a second thread only adds sync cost
    (seconds per forward pass when another job is busy on the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def batches(synthetic):
    """Two small validation batches (unequal sizes, so batch weighting matters)."""
    x, y = next(iter(make_loaders(synthetic, 64)["val"]))
    return [(x[:24], y[:24]), (x[24:40], y[24:40])]


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor], training: bool) -> None:
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in nonempty(before))
    assert all(m.training == training for m in model.modules())


def briefly_trained(model: nn.Module, synthetic, steps: int = 8) -> nn.Module:
    """A few SGD steps on all exits: enough to leave the random-init plateau."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for step, (x, y) in enumerate(make_loaders(synthetic, 64, augment=False)["train"]):
        if step == steps:
            break
        loss = sum(F.cross_entropy(z, y) for z in model(x).logits)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


# --- Gaussian weight noise -----------------------------------------------------------------
def test_sigma_zero_is_the_clean_model_and_the_model_is_untouched(tiny_model, batches):
    tiny_model.train()  # a training-mode model must come back in training mode
    before = snapshot(tiny_model)
    rows = gaussian_weight_noise_loss(tiny_model, batches, [0.0, 0.3], realizations=2)
    assert_unchanged(tiny_model, before, training=True)
    clean = evaluate(tiny_model, batches).rows()
    for r in (0, 1):
        got = [dict(exit=x["exit"], accuracy=x["accuracy"], loss=x["loss"])
               for x in rows if x["sigma"] == 0.0 and x["realization"] == r]
        assert got == clean  # exact, not approximate
    assert {x["exit"] for x in rows} == {"1", "2", "3", "4", "ensemble"}
    assert len(rows) == 2 * 2 * 5


def test_noise_is_reproducible_and_depends_on_the_seed(tiny_model, batches):
    run = lambda seed: gaussian_weight_noise_loss(tiny_model, batches, [0.5], realizations=2, seed=seed)  # noqa: E731
    first = run(0)
    assert first == run(0)
    assert [r["loss"] for r in first] != [r["loss"] for r in run(1)]
    r0 = [r["loss"] for r in first if r["realization"] == 0]
    r1 = [r["loss"] for r in first if r["realization"] == 1]
    assert r0 != r1  # realizations draw different noise


def test_noise_std_is_relative_to_each_layers_largest_weight():
    w0 = torch.randn(200, 300) * 0.01
    rel = _noisy(w0, 0.1, True, _generator(0)) - w0
    ab = _noisy(w0, 0.1, False, _generator(0)) - w0
    assert rel.std().item() == pytest.approx(0.1 * w0.abs().max().item(), rel=0.02)
    assert ab.std().item() == pytest.approx(0.1, rel=0.02)
    assert _noisy(w0, 0.0, True, _generator(0)) is w0


def test_loss_grows_with_noise_on_a_trained_model(tiny_model, synthetic, batches):
    model = briefly_trained(tiny_model, synthetic)
    rows = gaussian_weight_noise_loss(model, batches, [0.0, 0.05, 1.0], realizations=2)
    agg = {(r["sigma"], r["exit"]): r for r in expected_loss_increase(rows)}
    exits = ["1", "2", "3", "4", "ensemble"]
    assert all(agg[(0.0, e)]["loss_increase"] == 0.0 and agg[(0.0, e)]["accuracy_std"] == 0.0 for e in exits)
    assert all(agg[(1.0, e)]["loss_increase"] > 0 for e in exits)
    mean_increase = lambda s: sum(agg[(s, e)]["loss_increase"] for e in exits) / len(exits)  # noqa: E731
    assert mean_increase(1.0) > mean_increase(0.05)


def test_expected_loss_increase_aggregates_over_realizations():
    rows = [dict(sigma=0.0, realization=r, exit="1", accuracy=80.0, loss=0.5) for r in range(2)]
    rows += [dict(sigma=0.1, realization=0, exit="1", accuracy=70.0, loss=0.9),
             dict(sigma=0.1, realization=1, exit="1", accuracy=60.0, loss=1.1)]
    out = expected_loss_increase(rows)
    assert out[0] == dict(sigma=0.0, exit="1", loss_mean=0.5, loss_increase=0.0, accuracy_mean=80.0, accuracy_std=0.0)
    assert out[1]["loss_mean"] == pytest.approx(1.0) and out[1]["loss_increase"] == pytest.approx(0.5)
    assert out[1]["accuracy_mean"] == 65.0 and out[1]["accuracy_std"] == pytest.approx(math.sqrt(50.0))
    assert math.isnan(expected_loss_increase(rows[2:])[0]["loss_increase"])  # no sigma 0 to compare with


# --- top Hessian eigenvalue ----------------------------------------------------------------
class ToyTwoExit(nn.Module):
    """Exit 1 linear in x; exit 2 through a tanh hidden layer. Small enough for an explicit Hessian."""

    def __init__(self) -> None:
        super().__init__()
        self.shallow = nn.Linear(4, 3)
        self.hidden = nn.Linear(4, 5)
        self.deep = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> MultiExitOutput:
        return MultiExitOutput([self.shallow(x), self.deep(torch.tanh(self.hidden(x)))], [x, x])


def explicit_top_eigenvalue(model: nn.Module, x: torch.Tensor, y: torch.Tensor, exit_index) -> float:
    """Eigenvalue of largest magnitude of the full Hessian (what power iteration converges to)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for n, s in zip(names, shapes):
            params[n] = theta[i:i + s.numel()].view(s)
            i += s.numel()
        out = torch.func.functional_call(model, params, (x,))
        return F.cross_entropy(out.ensemble if exit_index == "ensemble" else out.logits[exit_index], y)

    eig = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, flat))
    return float(eig[eig.abs().argmax()])


@pytest.mark.parametrize("exit_index", [0, -1, "ensemble"])
def test_hessian_eigenvalue_matches_the_explicit_hessian(exit_index):
    torch.manual_seed(0)
    model = ToyTwoExit().double()
    x, y = torch.randn(13, 4, dtype=torch.float64), torch.randint(0, 3, (13,))
    batches = [(x[:8], y[:8]), (x[8:], y[8:])]  # unequal batches: weighted by size, as one mean over 13
    expected = explicit_top_eigenvalue(model, x, y, exit_index)
    got = top_hessian_eigenvalue(model, batches, exit_index, iterations=500, tol=1e-9)
    assert got == pytest.approx(expected, rel=1e-2)


def test_hessian_on_a_multi_exit_net_is_reproducible_and_leaves_the_model(tiny_model, batches):
    small = [(x[:8], y[:8]) for x, y in batches]
    tiny_model.train()
    before = snapshot(tiny_model)
    a = top_hessian_eigenvalue(tiny_model, small, 0, iterations=3)
    assert_unchanged(tiny_model, before, training=True)
    assert all(p.grad is None for p in tiny_model.parameters())
    assert math.isfinite(a) and a == top_hessian_eigenvalue(tiny_model, small, 0, iterations=3)


# --- 1-D loss landscape --------------------------------------------------------------------
def test_direction_is_filter_normalized_and_ignores_bn_and_biases(tiny_model):
    d = filter_normalized_direction(tiny_model, seed=0)
    params = dict(tiny_model.named_parameters())
    assert d.keys() == params.keys()
    weights = {f"{n}.weight" for n, _ in weight_layers(tiny_model)}
    for name, p in params.items():
        if name in weights:
            assert torch.allclose(d[name].flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1), rtol=1e-5)
        else:
            assert not d[name].any()  # BatchNorm and bias parameters stay where they are
    other = filter_normalized_direction(tiny_model, seed=1)
    name = next(iter(weights))
    assert torch.equal(d[name], filter_normalized_direction(tiny_model, seed=0)[name])
    assert not torch.equal(d[name], other[name])


def test_landscape_alpha_zero_is_the_clean_model(tiny_model, batches):
    tiny_model.eval()
    before = snapshot(tiny_model)
    rows = loss_landscape_1d(tiny_model, batches, [-0.5, 0.0, 0.5], exit_index="all")
    assert_unchanged(tiny_model, before, training=False)
    clean = evaluate(tiny_model, batches).rows()
    at_zero = [dict(exit=r["exit"], accuracy=r["accuracy"], loss=r["loss"]) for r in rows if r["alpha"] == 0.0]
    assert at_zero == clean
    deep = loss_landscape_1d(tiny_model, batches, [0.0, 0.5], exit_index=-1)
    assert [r["exit"] for r in deep] == ["4", "4"]
    assert deep[1] == next(r for r in rows if r["alpha"] == 0.5 and r["exit"] == "4")
    assert [r["exit"] for r in loss_landscape_1d(tiny_model, batches, [0.0], exit_index="ensemble")] == ["ensemble"]
    with pytest.raises(IndexError):
        loss_landscape_1d(tiny_model, batches, [0.0], exit_index=4)


# --- gradient monitor ----------------------------------------------------------------------
def test_gradient_monitor_records_every_layer_each_step(tiny_model, batches):
    mon = GradientMonitor(tiny_model)
    assert mon.record(0) == []  # no backward yet: nothing to record
    layers = [n for n, _ in weight_layers(tiny_model)]
    for step, (x, y) in enumerate(batches):
        tiny_model.zero_grad()
        sum(F.cross_entropy(z, y) for z in tiny_model(x).logits).backward()
        mon.record(step)
    rows = mon.rows()
    assert len(rows) == 2 * len(layers) and all(r["grad_norm"] > 0 for r in rows)
    assert [r["layer"] for r in rows if r["step"] == 1] == layers
    summary = mon.summary()
    assert [s["layer"] for s in summary] == layers and all(s["steps"] == 2 for s in summary)
    first = summary[0]
    norms = [r["grad_norm"] for r in rows if r["layer"] == first["layer"]]
    assert first["grad_norm_mean"] == pytest.approx(sum(norms) / 2) == first["grad_norm_median"]
    mon.reset()
    assert mon.rows() == []
