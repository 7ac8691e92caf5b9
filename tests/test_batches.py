"""Any source of batches, everywhere (issue 29): a DataLoader, a list of (x, y) batches, a TensorDataset or an
(x, y) pair of tensors give the same numbers in every function that takes data; a one-shot iterator is one line."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from wxy_hw.adaptation import train_chip_calibrator
from wxy_hw.batches import as_batches
from wxy_hw.hardware import evaluate_chips, summarize_chips
from wxy_hw.hardware import ChipConfig, chip_report
from wxy_hw.hardware.montecarlo import deploy_on
from wxy_hw.hardware.recalibrate import recalibrate_bn
from wxy_hw.models import attach_exits
from wxy_hw.models.evaluation import evaluate


def data(n: int = 40, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % 3)


def forms(ds: TensorDataset) -> dict[str, object]:
    """The same 40 images in every form a user may hold them."""
    x, y = ds.tensors
    return {"loader": DataLoader(ds, batch_size=16), "list": list(zip(x.split(16), y.split(16))),
            "dataset": ds, "tensors": (x, y)}


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))
    return attach_exits(body, ["2"], 3, input_shape=(1, 8, 8)).eval()


def test_every_form_gives_the_same_batches():
    ds = data()
    seen = {name: [(x.clone(), y.clone()) for x, y in as_batches(form, "d")] for name, form in forms(ds).items()}
    flat = {name: (torch.cat([x for x, _ in b]), torch.cat([y for _, y in b])) for name, b in seen.items()}
    for name, (x, y) in flat.items():
        assert torch.equal(x, ds.tensors[0]) and torch.equal(y, ds.tensors[1]), name
    assert len(as_batches(forms(ds)["loader"], "d")) == 3
    assert torch.equal(as_batches(ds.tensors[0], "x", labels=False).first_inputs(), ds.tensors[0][:256])


@pytest.mark.parametrize("bad, says", [((b for b in [(torch.zeros(2, 1), torch.zeros(2))]), "one-shot iterator"),
                                       (42, "expected a DataLoader"),
                                       ([torch.zeros(2, 1)], r"batch 0 is a Tensor; it must yield \(x, y\)"),
                                       (torch.zeros(4, 1, 8, 8), "without labels")])
def test_what_cannot_be_used_is_one_line_naming_it(bad, says):
    with pytest.raises(ValueError, match=says) as caught:
        list(as_batches(bad, "evaluate_chips: batches"))
    assert "\n" not in str(caught.value) and str(caught.value).startswith("evaluate_chips: batches")


def test_evaluation_on_chips_and_costs_take_any_form(net):
    ds = data()
    digital = {name: evaluate(net, form).accuracy for name, form in forms(ds).items()}
    assert len({tuple(v) for v in digital.values()}) == 1
    chips = {name: summarize_chips(evaluate_chips(net, "reram", form, seeds=range(2))) for name, form in forms(ds).items()}
    first = chips["list"]
    for name, rows in chips.items():
        assert [r["accuracy_mean"] for r in rows] == [r["accuracy_mean"] for r in first], name
    energies = {name: chip_report(net, ChipConfig(device="reram"), calibration=form)["chip"]["energy_pJ"]
                for name, form in forms(ds).items()}
    assert len(set(energies.values())) == 1, energies
    with pytest.raises(ValueError, match="one-shot iterator"):
        evaluate_chips(net, "reram", iter(DataLoader(ds, batch_size=16)), seeds=range(1))


def test_bn_recalibration_and_the_chip_calibrator_take_a_dataloader(net):
    ds = data()
    loader = DataLoader(ds, batch_size=16)
    a = recalibrate_bn(deploy_on(net, "reram", 0), loader)
    b = recalibrate_bn(deploy_on(net, "reram", 0), ds.tensors[0])
    for m, n in zip(a.modules(), b.modules()):
        if isinstance(m, nn.BatchNorm2d):
            assert torch.allclose(m.running_mean, n.running_mean, atol=1e-6)
    cal = train_chip_calibrator(net, deploy_on(net, "reram", 0), loader, epochs=1, width=2)
    assert cal(ds.tensors[0][:2]).shape == (2, 1, 8, 8)
