"""Hand-computed values of the cost model's physical laws (issue 24): converters by type against the ADC survey's
frontiers, supply scaling, the int8 reference's weight fetch, a cell read from its voltage, conductance and pulse."""
from __future__ import annotations

from pathlib import Path

import pytest

from wxy_hw.hardware import ChipConfig
from wxy_hw.hardware.cost import (SURVEY_SCHREIER_DB, SURVEY_WALDEN_FJ, adc_cycles, adc_decisions, adc_energy_pJ,
                                  map_network, summarize)
from wxy_hw.hardware.spec import DeviceSpecError, load_device
from wxy_hw.hardware.technology import at_supply, load_technology

ROOT = Path(__file__).resolve().parents[1]
TECH = {"adc_cycle_a_fJ": 1.0, "adc_cycle_b_fJ": 10.0}  # 1 fJ per bit + 10 fJ per decision


def test_sar_at_3_and_10_bits_by_hand():
    # 3 bits: 4 decisions · (3 + 10) fJ = 52 fJ, above Walden 0.669 · 8 = 5.4 fJ
    assert adc_energy_pJ(3, TECH) == pytest.approx(52e-3)
    # 10 bits: 11 · 20 = 220 fJ < Walden 0.669 · 1024 = 685.1 fJ: the survey's frontier floors it
    assert adc_energy_pJ(10, TECH) == pytest.approx(0.669 * 1024e-3)
    assert (SURVEY_WALDEN_FJ, SURVEY_SCHREIER_DB) == (0.669, 186.4)


def test_thermal_frontier_takes_over_at_high_resolution():
    # 14 bits: SNDR = 6.02·14 + 1.76 = 86.04 dB; E = 10^((86.04 − 186.4)/10) / 2 J = 46.1 pJ > Walden 11.0 pJ
    assert adc_energy_pJ(14, {"adc_cycle_a_fJ": 0.0, "adc_cycle_b_fJ": 0.0}) == pytest.approx(
        10 ** ((86.04 - 186.4) / 10) / 2 * 1e12)


def test_converter_types_count_their_decisions_and_cycles():
    assert [adc_decisions(4, t) for t in ("sar", "ramp", "flash")] == [5, 16, 15]
    assert [adc_cycles(4, t) for t in ("sar", "ramp", "flash")] == [5, 16, 1]
    # ramp at 4 bits: 16 · (4 + 10) = 224 fJ; flash: 15 · 14 = 210 fJ
    assert adc_energy_pJ(4, TECH, "ramp") == pytest.approx(0.224)
    assert adc_energy_pJ(4, TECH, "flash") == pytest.approx(0.210)
    with pytest.raises(ValueError, match="adc_type = pipeline must lie in sar / ramp / flash"):
        ChipConfig(adc_type="pipeline")


def test_a_chip_prices_its_converter_type():
    shape = [("l", 128, 64, 10)]
    kw = dict(rows=128, cols=128, adc_bits=6, input_activity=0.5)
    sar = summarize(*_mapped(shape, ChipConfig(**kw)))
    ramp = summarize(*_mapped(shape, ChipConfig(**kw, adc_type="ramp")))
    tech = load_technology()
    per = tech["adc_cycle_a_fJ"] * 6 + tech["adc_cycle_b_fJ"]
    assert ramp["adc_pJ"] / sar["adc_pJ"] == pytest.approx(64 * per / (7 * per))
    assert ramp["latency_ns"] > sar["latency_ns"]


def _mapped(shapes, cfg):
    m = map_network(shapes, cfg)
    return m["layers"], m["area_mm2"]


def test_supply_scales_switching_energy_as_v_squared_and_leakage_as_v():
    tech = load_technology("cmos22")  # 0.85 V
    low = at_supply(tech, 0.425)
    assert low["adc_cycle_b_fJ"] == pytest.approx(tech["adc_cycle_b_fJ"] / 4)
    assert low["sram_bit_pJ"] == pytest.approx(tech["sram_bit_pJ"] / 4)
    assert low["leakage_uW_per_array"] == pytest.approx(tech["leakage_uW_per_array"] / 2)
    assert low["cell_area_F2"] == tech["cell_area_F2"]
    assert at_supply(tech, None) is tech
    shape = [("l", 128, 64, 10)]
    kw = dict(rows=128, cols=128, adc_bits=4, input_activity=0.5)
    full = summarize(*_mapped(shape, ChipConfig(**kw)))
    half = summarize(*_mapped(shape, ChipConfig(**kw, vdd=0.425)))
    for part in ("dac", "digital", "buffer"):
        assert half[f"{part}_pJ"] == pytest.approx(full[f"{part}_pJ"] / 4)
    # the converter's decisions drop 4x, but no converter beats the survey's Walden frontier (0.669 fJ · 2^4)
    assert half["adc_pJ"] == pytest.approx(full["adc_pJ"] * 0.669 * 16 / (5 * (0.538 * 4 + 4.3753)))
    assert half["array_pJ"] == pytest.approx(full["array_pJ"])  # cells read at the device's own voltage


def test_int8_reference_fetches_each_weight_once_per_inference():
    tech = load_technology()
    k, n, m = 64, 32, 10
    layers, area = _mapped([("l", k, n, m)], ChipConfig(device="digital_int8", rows=256, cols=256))
    # activations in and out (m · (k + n) · 8 bits) plus every weight once (k · n · 8 bits) from SRAM
    assert layers[0].energy["buffer"] == pytest.approx((m * (k + n) * 8 + k * n * 8) * tech["sram_bit_pJ"])
    # MAC energy of the file at its technology's supply, scaled as V² with a chosen supply
    low, _ = _mapped([("l", k, n, m)], ChipConfig(device="digital_int8", rows=256, cols=256, vdd=0.425))
    assert low[0].energy["array"] == pytest.approx(layers[0].energy["array"] / 4)


def test_cell_read_is_v_squared_g_t_over_the_devices_own_pulse(tmp_path):
    reram = load_device("reram")
    assert reram.cell_read_fJ == pytest.approx(0.5 ** 2 * 40.0 * 0.93)  # V² · µS · ns = fJ
    longer = load_device("reram", {"energy.read_pulse_ns": 0.0})        # 0: the pulse lasts the MVM read (10 ns)
    assert longer.cell_read_fJ == pytest.approx(0.5 ** 2 * 40.0 * 10.0)
    sub = load_device("subthreshold_cmos")
    assert sub.cell_read_fJ == pytest.approx(10e-9 * 0.5 * 100e-9 * 1e15)  # I · V · t over its 100 ns settling
    both = tmp_path / "both.toml"
    both.write_text(ROOT.joinpath("devices", "reram.toml").read_text().replace("read_voltage_V =", "cell_read_fJ = 4.0\nread_voltage_V ="))
    with pytest.raises(DeviceSpecError, match="give exactly one of energy.read_voltage_V"):
        load_device(both)


def test_device_set_of_either_read_form_replaces_the_other():
    given = load_device("reram", {"energy.cell_read_fJ": 40.0})
    assert given.cell_read_fJ == 40.0 and given.energy["read_voltage_V"] == 0.0
    back = given.with_overrides({"energy.read_voltage_V": 0.2})
    assert back.cell_read_fJ == pytest.approx(0.2 ** 2 * 40.0 * 0.93)
