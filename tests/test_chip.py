"""Chip model: mapping, the documented energy/area laws, exits, the accuracy side, and the study CLI."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wxy_hw.chip_experiment import neurosim_validation, pareto_front
from wxy_hw.hardware import deploy
from wxy_hw.hardware.chip import ChipConfig, NeuroSimVGG8, chip_report, load_technology, map_network, summarize

ROOT = Path(__file__).resolve().parents[1]


def totals(shapes, cfg, largest=10_000):
    mapped = map_network(shapes, cfg, largest_input=largest)
    return summarize(mapped["layers"], mapped["area_mm2"]), mapped["layers"]


def test_mapping_counts_arrays_by_hand():
    # VGG-8's second conv: K = 128·9 = 1152, N = 128; 8-bit weights at 1 bit/cell without a pair: 8 cells
    cfg = ChipConfig(rows=128, cols=128, weight_bits=8, bits_per_cell=1, differential=False)
    _, layers = totals([("conv", 1152, 128, 1024)], cfg)
    assert layers[0].arrays == math.ceil(1152 / 128) * math.ceil(128 * 8 / 128)  # 9 × 8
    # a differential pair carries the sign: 7 magnitude slices × 2 cells
    _, layers = totals([("conv", 1152, 128, 1024)], ChipConfig(rows=128, cols=128, differential=True))
    assert layers[0].arrays == 9 * math.ceil(128 * 14 / 128)


def test_energy_is_linear_in_macs_for_a_fixed_mapping():
    cfg = ChipConfig()
    one, _ = totals([("l", 300, 64, 100)], cfg)
    two, _ = totals([("l", 300, 64, 200)], cfg)  # twice the MVMs through the same arrays
    assert two["macs"] == 2 * one["macs"]
    assert two["energy_pJ"] == pytest.approx(2 * one["energy_pJ"], rel=1e-12)
    assert two["area_mm2"] == pytest.approx(one["area_mm2"])


def test_adc_energy_and_area_follow_the_documented_laws():
    tech = load_technology()
    shapes = [("l", 512, 64, 50)]
    e4, _ = totals(shapes, ChipConfig(adc_bits=4))
    e8, _ = totals(shapes, ChipConfig(adc_bits=8))
    assert e8["adc_pJ"] / e4["adc_pJ"] == pytest.approx(2 ** (8 - 4))  # Walden: E = FOM · 2^bits
    base, per_bit = tech["sar_transistors_base"], tech["sar_transistors_per_bit"]
    assert e8["area_adc_mm2"] / e4["area_adc_mm2"] == pytest.approx((base + 7 * per_bit) / (base + 3 * per_bit))
    for part in ("array", "dac", "buffer"):  # nothing else depends on the ADC
        assert e8[f"{part}_pJ"] == pytest.approx(e4[f"{part}_pJ"])


def test_fewer_parallel_rows_cost_more_conversions_and_time():
    full, _ = totals([("l", 128, 64, 10)], ChipConfig(parallel_rows=128))
    quarter, _ = totals([("l", 128, 64, 10)], ChipConfig(parallel_rows=32))
    assert quarter["adc_pJ"] == pytest.approx(4 * full["adc_pJ"])
    assert quarter["latency_ns"] == pytest.approx(4 * full["latency_ns"])


def test_exits_share_the_chip_and_cost_more_the_deeper_they_are(tiny_model):
    report = chip_report(tiny_model, ChipConfig(rows=64, cols=64))
    exits = report["exits"]
    assert [e["exit"] for e in exits] == ["1", "2", "3", "4"]
    assert all(e["area_mm2"] == report["chip"]["area_mm2"] for e in exits)
    assert all(a["macs"] < b["macs"] for a, b in zip(exits, exits[1:]))
    assert sum(layer["macs"] for layer in report["layers"]) == report["chip"]["macs"]


def test_all_ideal_configuration_reproduces_the_digital_model_exactly(trained_dsn, synthetic):
    x, _ = next(iter(torch.utils.data.DataLoader(list(zip(synthetic.test.images[:32].float() / 255,
                                                          synthetic.test.labels[:32])), batch_size=32)))
    cfg = ChipConfig(device="ideal", rows=32, cols=32, ideal_converters=True)
    chip = deploy(trained_dsn, "ideal", overrides=cfg.spec_overrides())
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(chip(x).logits, trained_dsn(x).logits))


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="parallel_rows must lie in 1..rows"):
        ChipConfig(rows=64, parallel_rows=128)
    with pytest.raises(ValueError, match="technology 'nope' not found"):
        load_technology("nope")


def test_pareto_front_keeps_only_non_dominated_points():
    pts = [dict(e=1, a=50), dict(e=2, a=40), dict(e=3, a=70), dict(e=4, a=70), dict(e=5, a=90)]
    assert [p["e"] for p in pareto_front(pts, "e", "a")] == [1, 3, 5]


def test_neurosim_vgg8_is_rebuilt_and_within_a_factor_of_two_on_tops_per_watt():
    model = NeuroSimVGG8()
    assert sum(p.numel() for p in model.parameters()) == 3456 + 147456 + 294912 + 589824 + 1179648 + 2359296 \
        + 8192 * 1024 + 1024 * 10
    for row in neurosim_validation():
        assert 0.5 <= row["TOPS/W ratio"] <= 2.0, row


@pytest.mark.slow
def test_chip_study_cli_end_to_end(tmp_path):
    train = subprocess.run([sys.executable, str(ROOT / "experiments" / "train.py"), "--method", "dsn", "--dataset",
                            "synthetic", "--arch", "resnet8", "--width", "0.25", "--epochs", "1", "--out",
                            str(tmp_path / "m"), "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert train.returncode == 0, train.stderr
    res = subprocess.run([sys.executable, str(ROOT / "experiments" / "chip_study.py"), "--checkpoint",
                          str(tmp_path / "m" / "best.pt"), "--dataset", "synthetic", "--devices", "reram",
                          "digital_int8", "--rows", "64", "128", "--adc-bits", "4", "8", "--bits-per-cell", "1", "2",
                          "--chips", "1", "--samples", "40", "--out", str(tmp_path / "study"), "--quiet"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr
    rows = (tmp_path / "study" / "study.csv").read_text().splitlines()
    # reram: 2 sizes × 2 ADCs × 2 bits/cell; digital: 2 sizes; × 4 exits
    assert len(rows) - 1 == (2 * 2 * 2 + 2) * 4
    for name in ("front.csv", "neurosim_vgg8.csv", "pareto_energy.png", "pareto_area.png", "energy_breakdown.png"):
        assert (tmp_path / "study" / name).exists(), name
    assert json.loads((tmp_path / "study" / "manifest.json").read_text())["status"] == "complete"
    bad = subprocess.run([sys.executable, str(ROOT / "experiments" / "chip_study.py"), "--rows", "64",
                          "--adc-bits", "20", "--out", str(tmp_path / "bad")], capture_output=True, text=True,
                         cwd=ROOT, timeout=600)
    assert bad.returncode == 2 and "adc_bits must lie in 1..16" in bad.stderr and not (tmp_path / "bad").exists()
