"""One chip described once: what a study deploys for accuracy is what it prices for energy.

``--device-set`` values and architecture flags reach both sides in every study that reports both
(issue 26); a ``ChipConfig`` built from a ``DeviceSpec`` keeps that spec's values.
"""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from helpers import TINY, check_device_set_and_adc_bits_reach_both
from wxy_hw.hardware import Chip, ChipConfig, chip_report, load_device
from wxy_hw.hardware.cost import cells_per_weight
from wxy_hw.hardware.physics import program_chips, program_sliced_float
from wxy_hw.studies.config import ChipSettings


def _linear() -> nn.Module:
    layer = nn.Linear(64, 16, bias=False)
    nn.init.uniform_(layer.weight, -1, 1)
    return layer


def test_a_chip_config_built_from_a_spec_keeps_its_overridden_cells():
    plain = load_device("reram")
    fewer = load_device("reram", {"mapping.levels": 4})
    dearer = load_device("reram", {"mapping.levels": 4, "energy.cell_read_fJ": 40.0})
    a, b, c = (ChipConfig(device=d, input_activity=0.5).resolve() for d in (plain, fewer, dearer))
    assert (a.config.bits_per_cell, b.config.bits_per_cell) == (4, 2)  # ⌊log2 levels⌋ of each spec
    # the device's own cells: one differential pair per weight, holding ⌊log2 levels⌋ bits and the sign
    assert (a.config.weight_bits, b.config.weight_bits) == (5, 3)
    assert c.spec.mapping["levels"] == 4 and c.config.as_dict()["device"] == "reram"
    net = _linear()
    ea, eb, ec = (chip_report(net, x, (64,))["chip"] for x in (a, b, c))
    assert eb["adc_pJ"] == pytest.approx(ea["adc_pJ"])  # one slice each: the same conversions
    # the file's read energy reaches the price: cells at 40 fJ instead of reram's 9.3 (0.5² V² · 40 µS · 0.93 ns)
    assert ec["array_pJ"] / eb["array_pJ"] == pytest.approx(40.0 / (0.5 ** 2 * 40.0 * 0.93), rel=1e-9)


def _noiseless(chip: Chip) -> torch.Tensor:
    """The distinct weights the accuracy side programs for a ramp of 16,384 weights on ``chip`` without noise."""
    spec = chip.spec.with_overrides({"noise.programming": "none", "noise.drift": "none", "noise.read_noise": 0.0})
    w = torch.linspace(-1, 1, 128 * 128).reshape(128, 128)  # one tile: one full scale
    gen = [torch.Generator().manual_seed(0)]
    prog = program_sliced_float(w, spec, gen) if spec.mapping["weight_bits"] else program_chips(w, spec, gen)
    return torch.unique(torch.round(prog.weight / prog.weight.abs().max() * 1e4))


@pytest.mark.parametrize("device_set, settings, weight_bits, cells", [
    ({}, {}, 5, 2),                                   # reram's file: one 16-level pair per weight
    ({"mapping.cells_per_weight": 2}, {}, 9, 4),      # two pairs: 256 steps, two slices
    ({}, {"bits_per_cell": 4}, 8, 4),                 # asked for: 8-bit weights in two 4-bit slices
    ({}, {"bits_per_cell": 2, "weight_bits": 6}, 6, 6),
])
def test_the_chip_priced_is_the_chip_programmed(device_set, settings, weight_bits, cells):
    """The cost model's weight bits and cells per weight are what the accuracy side deploys: a noiseless chip
    programs exactly 2^weight_bits − 1 distinct weights (a sign and weight_bits − 1 magnitude bits)."""
    chip = ChipConfig(device=load_device("reram", device_set), **settings).resolve()
    assert (chip.config.weight_bits, cells_per_weight(chip)) == (weight_bits, cells)
    assert len(_noiseless(chip)) == 2 ** weight_bits - 1
    assert bool(chip.spec.mapping["weight_bits"]) == bool(settings)  # bit-sliced exactly when asked for


def test_the_resolved_spec_carries_the_periphery_the_cost_model_prices():
    chip = ChipConfig(device="reram", rows=64, adc_bits=5, act_bits=6, ir_beta_per_row=0.001).resolve()
    assert isinstance(chip, Chip)
    a = chip.spec.array
    assert (a["rows"], a["cols"], a["adc_bits"], a["dac_bits"], a["ranging"]) == (64, 256, 5, 6, "fixed")
    assert chip.spec.ir_drop["beta"] == pytest.approx(0.064)
    assert chip.converters == "5-bit ADC, 6-bit inputs, fixed ranging"
    # None: the device file's converters; reram has none, so accuracy is ideal and the energy says what it priced
    ideal = ChipConfig(device="reram", adc_bits=None).resolve()
    assert ideal.spec.array["adc_bits"] == 0 and ideal.config.adc_bits == 8 and ideal.config.ideal_converters
    assert "ideal converters" in ideal.converters
    # an unchanged periphery leaves the device's spec as it is (the accuracy engine sees the same object)
    cells = load_device("reram")
    assert ChipConfig(device=cells, adc_bits=None, ranging=None).resolve().spec is cells


def test_ir_drop_of_a_device_file_survives_unless_the_chip_sets_it():
    cells = load_device("reram", {"ir_drop.beta": 0.05})
    assert ChipConfig(device=cells).resolve().spec.ir_drop["beta"] == 0.05
    assert ChipConfig(device=cells, ir_beta_per_row=0.0).resolve().spec.ir_drop["beta"] == 0.0


def test_chip_settings_apply_device_set_and_study_defaults():
    class Study(ChipSettings):
        CHIP_DEFAULTS = {"adc_bits": None}

    chip = Study(device="reram", device_set={"mapping.levels": 4}, rows=32).chip()
    assert chip.spec.mapping["levels"] == 4 and (chip.config.rows, chip.config.cols) == (32, 32)
    assert chip.config.ideal_converters and chip.spec.array["adc_bits"] == 0
    assert Study(adc_bits=6).chip().spec.array["adc_bits"] == 6
    assert ChipSettings().chip().config.adc_bits == 8 and not ChipSettings().chip().config.ideal_converters


def test_moved_cost_names_still_import_from_chip_with_a_removal_version():
    import wxy_hw.hardware.chip as chip_module
    from wxy_hw.hardware.cost import chip_report as moved

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert chip_module.chip_report is moved
    assert "wxy_hw.hardware.cost.chip_report" in str(caught[0].message) and "removed in wxy_hw 0." in str(caught[0].message)
    with pytest.raises(AttributeError):
        chip_module.no_such_name  # noqa: B018


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from wxy_hw.studies.train import train_run

    out = tmp_path_factory.mktemp("one_chip") / "sd"
    train_run(**{**TINY, "method": "self_distillation"}, out=out)
    return out / "best.pt"


def _read(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _noise_sweep(ckpt: Path, out: Path, **chip) -> tuple[dict[str, float], dict[str, float]]:
    from wxy_hw.studies.noise_sweep import noise_sweep_run

    noise_sweep_run(checkpoints=[str(ckpt)], dataset="synthetic", device="reram", scales=[1.0], flat=False,
                    bn_recalibrate=0, chips=2, samples=32, torch_device="cpu", out=out, progress=False,
                    log=lambda _: None, **chip)
    accuracy = {r["exit"]: float(r["accuracy_mean"]) for r in _read(out / "summary_scale.csv")}
    energy = {r["exit"]: float(r["energy_pJ"]) for r in _read(out / "energy.csv")}
    return accuracy, energy


@pytest.mark.slow
def test_noise_sweep_device_set_and_adc_bits_reach_accuracy_and_energy(tiny_checkpoint, tmp_path):
    check_device_set_and_adc_bits_reach_both(lambda out, **chip: _noise_sweep(tiny_checkpoint, out, **chip), tmp_path)
