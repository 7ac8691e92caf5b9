"""SCAN heads, real early exit, threshold search and the energy model."""
from __future__ import annotations

import pytest
import torch

from wxy_hw.data import make_loaders
from wxy_hw.hardware import ChipConfig, chip_report
from wxy_hw.hardware.spec import load_device
from wxy_hw.inference import confidence, early_exit_inference, exit_table, nsga2_front, search_thresholds, simulate
from wxy_hw.methods import build_method
from wxy_hw.models import build_model, exit_costs, exit_path_macs

from conftest import train_tiny
from helpers import nonempty


@pytest.fixture(scope="module")
def trained(synthetic, tmp_path_factory):
    return train_tiny(synthetic, "self_distillation", 5, tmp_path_factory.mktemp("ee"))


@pytest.mark.parametrize("size", [28, 32])
def test_scan_heads_attend_and_classify(size):
    model = build_model("resnet18", 10, 1, 0.125, size, heads="scan").eval()
    out = model(torch.randn(2, 1, size, size))
    assert len(out) == 4 and all(z.shape == (2, 10) for z in out.logits)
    feat = torch.randn(2, model.stage_channels[2], model.stage_sizes[2], model.stage_sizes[2])
    att = model.heads[2].attention(feat)
    assert att.shape == feat.shape and (att > 0).all() and (att < 1).all()


def test_scan_method_defaults():
    m = build_method("scan")
    assert (m.alpha, m.temperature, m.t2_scaling, m.ce_weight) == (0.5, 3.0, True, 0.5)
    assert m.default_heads == "scan"


def _manual_exits(model, x, thresholds):
    out = model(x)
    conf = torch.stack([confidence(z) for z in out.logits], 1)
    exits = torch.full((len(x),), len(out) - 1)
    for k in reversed(range(len(out) - 1)):
        exits = torch.where(conf[:, k] >= thresholds[k], torch.tensor(k), exits)
    preds = torch.stack([z.argmax(1) for z in out.logits], 1)[torch.arange(len(x)), exits]
    return exits, preds


def test_early_exit_matches_the_rule_and_skips_compute(trained, synthetic):
    x, _ = next(iter(make_loaders(synthetic, 200)["test"]))
    thresholds = [0.5, 0.4, 0.3]
    path = exit_path_macs(trained)
    seen = []
    hook = trained.stages[3].register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    result = early_exit_inference(trained, x, thresholds, path_macs=path)
    hook.remove()
    exits, preds = _manual_exits(trained, x, thresholds)
    assert torch.equal(result.exit_index, exits) and torch.equal(result.predictions, preds)
    assert seen == [int((exits == 3).sum())] and 0 < seen[0] < len(x)  # only the survivors ran stage 4
    assert torch.equal(result.macs, torch.tensor(path, dtype=torch.float64)[exits])


def test_early_exit_extremes_and_ensemble(trained, synthetic):
    x, _ = next(iter(make_loaders(synthetic, 64)["test"]))
    out = trained(x)
    never = early_exit_inference(trained, x, [1.1] * 3)
    assert torch.equal(never.predictions, out.final.argmax(1)) and (never.exit_index == 3).all()
    always = early_exit_inference(trained, x, [0.0] * 3)
    assert torch.equal(always.predictions, out.logits[0].argmax(1)) and (always.exit_index == 0).all()
    ens = early_exit_inference(trained, x, [1.1] * 3, final="ensemble")
    assert torch.equal(ens.predictions, out.ensemble.argmax(1))
    with pytest.raises(ValueError, match="need 3 thresholds"):
        early_exit_inference(trained, x, [0.5])


def test_exit_path_macs_include_earlier_heads(trained):
    alone = [c.macs for c in exit_costs(trained)]
    path = exit_path_macs(trained)
    assert path[0] == alone[0] and all(p > a for p, a in zip(path[1:], alone[1:]))
    assert path == sorted(path)


def test_threshold_search_is_exact_feasible_and_uses_validation(trained, synthetic):
    loaders = make_loaders(synthetic, 100)
    path = exit_path_macs(trained)
    table = exit_table(trained, loaders["val"], path, exit_costs(trained)[-1].macs)
    best = search_thresholds(table, generations=20, pop_size=30)
    assert best["accuracy"] >= best["target_accuracy"] - 1e-9
    x, y = (torch.cat(t) for t in zip(*loaders["val"]))
    real = early_exit_inference(trained, x, best["thresholds"])
    assert real.accuracy(y) == pytest.approx(best["accuracy"]) and real.exit_shares(4) == pytest.approx(best["exit_shares"])
    front = nsga2_front(table, generations=20, pop_size=30)
    costs = [p["mean_cost"] for p in front]
    assert costs == sorted(costs) and len(front) >= 2
    for p in front:  # non-dominated
        assert not any(q["mean_cost"] < p["mean_cost"] and q["accuracy"] > p["accuracy"] for q in front)
    assert simulate(table, [1.1] * 3)["accuracy"] == pytest.approx(table.correct[:, -1].mean() * 100)


def test_energy_per_exit_comes_from_the_one_cost_model(trained):
    costs = [c.macs for c in exit_costs(trained)]
    for device in ("reram", "pcm", "subthreshold_cmos", "digital_int8"):
        report = chip_report(trained, ChipConfig(device=device, input_activity=0.5), (1, 28, 28))
        assert [r["macs"] for r in report["exits"]] == costs
        path = [r["energy_pJ"] for r in report["paths"]]
        assert path == sorted(path) and all(r["energy_pJ"] > 0 for r in report["exits"])
        # the early-exit path to k pays every earlier head: never cheaper than running to exit k alone
        assert all(p["energy_pJ"] >= e["energy_pJ"] for p, e in nonempty(zip(report["paths"], report["exits"], strict=True)))
        assert report["paths"][0]["energy_pJ"] == report["exits"][0]["energy_pJ"]
    digital = chip_report(trained, ChipConfig(device="digital_int8"), (1, 28, 28))
    assert all(layer["adc_pJ"] == 0 and layer["dac_pJ"] == 0 for layer in nonempty(digital["layers"]))
    e_mac_pJ = load_device("digital_int8").energy["cell_read_fJ"] * 1e-3  # E_MAC of the device file: 100 fJ
    assert e_mac_pJ == pytest.approx(0.1)
    assert digital["chip"]["array_pJ"] == pytest.approx(digital["chip"]["macs"] * e_mac_pJ)


@pytest.mark.slow
def test_the_early_exit_variant_is_cached_under_its_own_name(tmp_path, monkeypatch):
    """EARLY_EXIT_VARIANT trains once into a directory that names its width and exits (never the default's)."""
    from wxy_hw.checkpoint import load_model
    from wxy_hw.studies import EARLY_EXIT_VARIANT, cached_checkpoint

    budget = dict(epochs=1, subset=200, cache_dir=tmp_path, progress=False)
    path = cached_checkpoint("self_distillation", "synthetic", **budget, **EARLY_EXIT_VARIANT)
    # the default stem is stride 2 already: only the exits name the folder; the width names the budget's folder
    assert path.parent.name == "self_distillation_exits234" and "_w0.5_" in path.parent.parent.name
    assert path.parent.parent.name.startswith("synthetic_resnet18_w0.5_")
    model = load_model(path)
    assert model.exit_stages == (1, 2, 3) and model.config["stem_stride"] == 2
    assert model.stage_sizes[0] == 14  # stage 1 runs at half the 28-px input's resolution

    def no_training(*a, **k):
        raise AssertionError("a cached model was trained again")
    monkeypatch.setattr("wxy_hw.studies.spine.train_run", no_training)
    assert cached_checkpoint("self_distillation", "synthetic", **budget, **EARLY_EXIT_VARIANT) == path


def test_exit_share_plot_takes_models_with_exits_after_different_stages(tmp_path):
    """A model trained with --exit-stages 2 3 4 beside a four-exit one: bars by the stage each exit follows."""
    from wxy_hw.studies.early_exit_energy import _plot_shares

    per_exit = [dict(method="a", exit=str(e)) for e in (1, 2, 3, 4)] + [dict(method="b", exit=str(e)) for e in (2, 3, 4)]
    dynamic = [dict(method="a", setting="digital", exit_shares=[0.5, 0.2, 0.2, 0.1]),
               dict(method="b", setting="digital", exit_shares=[0.7, 0.2, 0.1])]
    paths = _plot_shares(dynamic, per_exit, "reram", tmp_path / "shares")
    assert all(p.exists() for p in nonempty(paths))


def test_a_single_exit_method_keeps_its_one_exit_under_train_exit_stages(tmp_path, monkeypatch):
    """--train-exit-stages shapes the cached multi-exit models only; the baseline is cached (and trained) as always."""
    from wxy_hw.studies import cached_checkpoint

    seen = {}
    monkeypatch.setattr("wxy_hw.studies.spine.train_run", lambda **kw: seen.update(kw))
    path = cached_checkpoint("baseline", "synthetic", cache_dir=tmp_path, progress=False, width=0.5, exit_stages=[2, 3, 4])
    assert path.parent.name == "baseline" and "exit_stages" not in seen and seen["width"] == 0.5


def test_checkpoints_of_one_method_are_all_kept_and_told_apart(synthetic, tmp_path):
    """Seeds of a cached model differ only in the folder above the method's: none may replace another."""
    import shutil

    from wxy_hw.studies.spine import resolve_checkpoints

    train_tiny(synthetic, "dsn", 1, tmp_path / "src")
    src = tmp_path / "src" / "best.pt"
    paths = []
    for seed in range(3):
        dst = tmp_path / f"cache_s{seed}" / "dsn" / "best.pt"
        dst.parent.mkdir(parents=True)
        shutil.copy(src, dst)
        paths.append(dst)
    found = resolve_checkpoints(paths, [], dataset=None)
    assert list(found) == ["dsn", "dsn:cache_s1/dsn", "dsn:cache_s2/dsn"]
    assert [c.path for c in found.values()] == paths
