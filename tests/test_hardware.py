"""Device files, the native noise engine, and its invariants."""
from __future__ import annotations

import math
import tomllib

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from wxy_hw.hardware import (DeviceSpecError, analog_layers, available_devices, deploy, evaluate_chips, load_device,
                             program_weight, summarize_chips, weight_errors)
from wxy_hw.hardware.physics import tile_abs_max, tile_ids
from wxy_hw.hardware.spec import devices_dir
from wxy_hw.models import build_model

from helpers import edited_device_file

SHIPPED = ["reram", "pcm", "subthreshold_cmos", "digital_int8", "ideal"]
QUIET = {"mapping.levels": 0, "noise.read_noise": 0.0}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("resnet8", 10, 1, 0.125, 28).eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def same_outputs(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.logits, b.logits))


# --- device files -----------------------------------------------------------------------------
def test_shipped_devices_load_and_every_number_has_a_source():
    assert set(SHIPPED) <= set(available_devices())
    for name in SHIPPED:
        spec = load_device(name)
        raw = tomllib.loads((devices_dir() / f"{name}.toml").read_text())
        for section, table in raw.items():
            for key, value in table.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    assert section in spec.sources or f"{section}.{key}" in spec.sources, f"{name}: {section}.{key}"


def test_subthreshold_sigma_follows_pelgrom_and_temperature():
    spec = load_device("subthreshold_cmos")
    s = spec.subthreshold
    u_t = 1.380649e-23 * s["temperature_K"] / 1.602176634e-19 * 1e3
    expected = s["a_vt_mV_um"] / math.sqrt(s["width_um"] * s["length_um"]) / (s["slope_factor"] * u_t)
    assert spec.lognormal_sigma == pytest.approx(expected) and 0.05 < spec.lognormal_sigma < 0.15
    hot = spec.with_overrides({"subthreshold.temperature_K": 400.0})
    assert hot.lognormal_sigma < spec.lognormal_sigma  # larger U_T = kT/q, smaller relative mismatch


@pytest.mark.parametrize("edit,match", [
    (("mapping", "g_max_uS", "'forty'"), "mapping.g_max_uS = 'forty' has type str; expected float"),
    (("mapping", "levels", "-3"), "mapping.levels = -3 is out of range"),
    (("noise", "stuck_at_hrs", "1.5"), "noise.stuck_at_hrs = 1.5 is out of range"),
    (("noise", "colour", "1.0"), "unknown key noise.colour"),
    (("noise", "programming", "'magic'"), "noise.programming = 'magic' is not accepted; expected one of 'none'"),
])
def test_malformed_device_file_names_file_key_and_expectation(tmp_path, edit, match):
    bad = edited_device_file(tmp_path, *edit, name="bad.toml")
    with pytest.raises(DeviceSpecError, match=match) as info:
        load_device(bad)
    assert str(bad) in str(info.value)


def test_missing_section_bad_toml_and_unknown_name(tmp_path):
    text = (devices_dir() / "ideal.toml").read_text()
    no_energy = tmp_path / "no_energy.toml"
    no_energy.write_text(text.split("[energy]")[0])
    with pytest.raises(DeviceSpecError, match=r"missing section \[energy\]"):
        load_device(no_energy)
    broken = tmp_path / "broken.toml"
    broken.write_text("[device\nname=")
    with pytest.raises(DeviceSpecError, match="not valid TOML"):
        load_device(broken)
    with pytest.raises(DeviceSpecError, match="unknown device 'rram'.*reram"):
        load_device("rram")


def test_user_written_device_file_works_without_code_change(tmp_path, model, x):
    custom = tmp_path / "my_device.toml"
    custom.write_text("""
[device]
name = "my_device"
technology = "custom"
[mapping]
g_max_uS = 10.0
levels = 8
[noise]
programming = "relative"
programming_scale = 0.02
drift = "none"
stuck_at_hrs = 0.01
[array]
rows = 64
cols = 64
[energy]
cell_read_fJ = 1.0
""")
    chip = deploy(model, custom, seed=3)
    assert chip.deploy_info["device"] == "my_device"
    assert not same_outputs(chip(x), model(x))


# --- engine invariants --------------------------------------------------------------------------
def test_ideal_device_is_bit_identical_for_multi_exit_and_user_modules(model, x):
    assert same_outputs(deploy(model, "ideal", seed=0)(x), model(x))
    user = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 3)).eval()
    assert torch.equal(deploy(user, "ideal")(x), user(x))


@pytest.mark.parametrize("name", ["reram", "pcm", "subthreshold_cmos"])
def test_zero_noise_without_quantization_or_drift_is_bit_identical(model, x, name):
    spec = load_device(name).with_overrides({"mapping.levels": 0, "noise.drift": "none"})
    assert same_outputs(deploy(model, spec, seed=5, noise_scale=0.0)(x), model(x))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 40), st.floats(0.01, 10.0))
def test_program_weight_identity_when_every_effect_is_off(out_dim, fan_in, scale):
    w = torch.randn(out_dim, fan_in, generator=torch.Generator().manual_seed(out_dim * 100 + fan_in)) * scale
    prog = program_weight(w, load_device("ideal"), torch.Generator().manual_seed(0))
    assert torch.equal(prog.weight, w) and prog.read_sigma is None


def test_deploy_never_mutates_and_seed_reproduces_the_chip(model, x):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a, b, c = deploy(model, "reram", seed=7), deploy(model, "reram", seed=7), deploy(model, "reram", seed=8)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    wa, wb, wc = (torch.cat([m.weight.flatten() for _, m in analog_layers(d)]) for d in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert same_outputs(a(x), b(x))  # read noise streams are seeded per chip too


def test_read_noise_is_fresh_each_forward_with_the_predicted_variance():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Linear(50, 3, bias=False)).eval()
    spec = load_device("reram").with_overrides({"mapping.levels": 0, "noise.programming": "none",
                                                "noise.drift": "none", "noise.read_noise": 0.05})
    chip = deploy(lin, spec, seed=0, read_noise_mode="per_mvm")
    xin = torch.randn(1, 50).repeat(4000, 1)
    y = chip(xin)
    assert not torch.equal(y[0], y[1])
    w_max = lin[0].weight.abs().max()
    predicted = 0.05 * w_max * xin[0].norm()
    assert y.std(0).mean().item() == pytest.approx(predicted.item(), rel=0.08)
    assert torch.allclose(y.mean(0), lin(xin[:1])[0], atol=4 * predicted.item() / math.sqrt(4000))
    # per_batch: one perturbation per forward call, same marginal spread across calls
    fast = deploy(lin, spec, seed=0)
    draws = torch.cat([fast(xin[:1]) for _ in range(2000)])
    assert not torch.equal(fast(xin[:2])[0], fast(xin[:2])[0])  # fresh draw on every call
    assert draws.std(0).mean().item() == pytest.approx(predicted.item(), rel=0.08)


def test_quantization_to_device_levels():
    w = torch.randn(8, 40)
    spec = load_device("reram").with_overrides({"noise.programming": "none", "noise.read_noise": 0.0,
                                                "noise.drift": "none", "mapping.levels": 5})
    prog = program_weight(w, spec, torch.Generator().manual_seed(0))
    u = prog.weight / prog.w_max
    assert len(torch.unique(torch.round(u * 1e4))) <= 2 * 5 - 1
    assert (u.abs() - torch.round(u.abs() * 4) / 4).abs().max() < 1e-5


def test_stuck_at_faults():
    w = torch.randn(16, 64)
    base = {"noise.programming": "none", "noise.read_noise": 0.0, "noise.drift": "none", "mapping.levels": 0}
    dead = load_device("reram").with_overrides({**base, "noise.stuck_at_hrs": 1.0})
    assert torch.count_nonzero(program_weight(w, dead, torch.Generator().manual_seed(0)).weight) == 0
    some = load_device("reram").with_overrides({**base, "noise.stuck_at_lrs": 0.1})
    prog = program_weight(w, some, torch.Generator().manual_seed(0))
    changed = ((prog.weight - w).abs() > 1e-5).float().mean().item()
    assert 0.12 < changed < 0.26  # each weight has two devices: 1 − 0.9² = 19 % touched


def test_pcm_drift_shrinks_weights_and_compensation_restores_the_scale():
    w = torch.randn(32, 64)
    raw = load_device("pcm").with_overrides({"noise.drift_compensation": False})
    comp = load_device("pcm")
    mags = [program_weight(w, raw, torch.Generator().manual_seed(0), t).weight.abs().mean().item()
            for t in (1.0, 86400.0, 3e7)]
    assert mags[0] > mags[1] > mags[2]
    late = program_weight(w, comp, torch.Generator().manual_seed(0), 3e7).weight
    early = program_weight(w, comp, torch.Generator().manual_seed(0), 0.0).weight
    assert late.sum(1).abs().sum().item() == pytest.approx(early.sum(1).abs().sum().item(), rel=1e-4)


def test_times_outside_the_device_model_are_refused(model):
    with pytest.raises(DeviceSpecError, match="covers up to 172800 s"):
        deploy(model, "reram", t_inference=30 * 86400.0)


def test_ir_drop_attenuates_outputs_with_column_current(model, x):
    spec = load_device("ideal").with_overrides({"ir_drop.beta": 0.3})
    lin = nn.Sequential(nn.Linear(20, 4)).eval()
    inp = torch.rand(5, 20)
    y_clean = lin(inp) - lin[0].bias
    y_drop = deploy(lin, spec)(inp) - lin[0].bias
    ratio = (y_drop / y_clean)
    assert ((ratio > 0.69) & (ratio <= 1.0 + 1e-6)).all() and (ratio < 0.999).any()


def test_tiles_are_balanced_like_aihwkit():
    assert torch.bincount(tile_ids(576, 256)).tolist() == [192, 192, 192]
    w = torch.arange(12.0).view(2, 6)
    assert tile_abs_max(w, 3, 2).tolist() == [[8, 8, 8, 11, 11, 11], [8, 8, 8, 11, 11, 11]]


def test_monte_carlo_rows_and_summary(model, x):
    batches = [(x, torch.arange(8) % 10)]
    rows = evaluate_chips(model, "subthreshold_cmos", batches, seeds=range(3))
    assert len(rows) == 3 * 5 and {r["chip"] for r in rows} == {0, 1, 2}
    summary = summarize_chips(rows, ("exit",))
    assert {r["exit"] for r in summary} == {"1", "2", "3", "4", "ensemble"} and all(r["chips"] == 3 for r in summary)


def test_weight_error_magnitudes_are_realistic(model):
    errs = {name: weight_errors(model, deploy(model, name, seed=0, overrides=QUIET)).std().item()
            for name in ("reram", "subthreshold_cmos")}
    assert 0.03 < errs["reram"] < 0.12          # ~ 5 % of g_max at 1 s on a ±|W|max range
    assert 0.01 < errs["subthreshold_cmos"] < 0.06  # 10 % multiplicative on mostly small weights


def test_a_bare_layer_deploys_too():
    lin = nn.Linear(30, 4).eval()
    chip = deploy(lin, "subthreshold_cmos", seed=0)
    assert type(chip).__name__ == "AnalogLinear" and not torch.equal(chip.weight, lin.weight)


def test_ir_drop_is_computed_per_row_tile():
    torch.manual_seed(0)
    lin = nn.Linear(300, 3, bias=False).eval()
    spec = load_device("ideal").with_overrides({"ir_drop.beta": 0.5, "array.rows": 256})
    inp = torch.rand(2, 300)
    w = lin.weight.detach()
    expected = 0
    for rows in (slice(0, 150), slice(150, 300)):  # balanced tiles of 150
        part = inp[:, rows] @ w[:, rows].T
        current = (inp[:, rows] / inp.abs().amax(1, keepdim=True)) @ w[:, rows].abs().T
        expected = expected + part * (1 - 0.5 * current / (150 * w[:, rows].abs().max()))
    assert torch.allclose(deploy(lin, spec)(inp), expected, atol=1e-5)


def test_one_bit_converters_are_rejected():
    with pytest.raises(DeviceSpecError, match="array.adc_bits = 1 is out of range; expected 0 \\(ideal\\) or"):
        load_device("reram", {"array.adc_bits": 1})


def test_adc_digitises_each_arrays_partial_sum():
    """Per-array ADC: y = Σ_t Q(x_t·W_tᵀ), each crossbar's partial sum quantized on its own range."""
    from wxy_hw.hardware.engine import quantize_fixed, quantize_signed

    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 5, bias=False)
    x = torch.randn(7, 12)
    per_sample = {"array.ranging": "per_sample"}
    chip = deploy(lin, "ideal", overrides={"array.rows": 4, "array.adc_bits": 3, **per_sample})
    parts = [x[:, t:t + 4] @ lin.weight[:, t:t + 4].T for t in (0, 4, 8)]
    expected = sum(quantize_signed(p, 3, (1,)) for p in parts)
    assert torch.allclose(chip(x), expected, atol=1e-6)
    whole = deploy(lin, "ideal", overrides={"array.rows": 12, "array.adc_bits": 3, **per_sample})
    assert torch.allclose(whole(x), quantize_signed(x @ lin.weight.T, 3, (1,)), atol=1e-6)
    fine = deploy(lin, "ideal", overrides={"array.rows": 4, "array.adc_bits": 16, **per_sample})
    assert torch.allclose(fine(x), lin(x), atol=1e-3)  # a fine ADC is transparent
    # fixed ranging (the default): each array's range is set once, on the calibration batch, then kept
    fixed = deploy(lin, "ideal", overrides={"array.rows": 4, "array.adc_bits": 3}, calibration=[x[:4]])
    ranges = [p[:4].abs().max() for p in parts]  # 5 outputs ≤ cols: one column group per array
    assert torch.allclose(fixed(x), sum(quantize_fixed(p, 3, r) for p, r in zip(parts, ranges)), atol=1e-6)
    assert fixed(x[4:]).abs().max() <= sum(ranges) + 1e-6  # beyond the calibrated range a converter clips


def test_read_groups_split_each_tile_into_the_rows_read_at_once():
    from wxy_hw.hardware.physics import read_groups

    assert torch.equal(read_groups(10, 4), tile_ids(10, 4))  # every row of a tile at once: groups = tiles
    assert read_groups(10, 4, 2).tolist() == [0, 0, 1, 1, 2, 2, 3, 4, 4, 5]  # tiles 4/3/3, never straddled
    assert torch.bincount(read_groups(576, 256, 64)).tolist() == [64] * 9
    assert torch.equal(read_groups(576, 256, 192), tile_ids(576, 256))  # a group as large as the tile


def test_parallel_rows_digitise_each_group_of_rows_on_its_own():
    """y = Σ_g Q(x_g·W_gᵀ) over the groups of parallel_rows rows inside each array (NeuroSim's parallelRead)."""
    from wxy_hw.hardware.engine import quantize_signed

    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 5, bias=False)
    x = torch.randn(7, 12)
    chip = deploy(lin, "ideal", overrides={"array.rows": 6, "array.parallel_rows": 2, "array.adc_bits": 3,
                                            "array.ranging": "per_sample"})
    parts = [x[:, t:t + 2] @ lin.weight[:, t:t + 2].T for t in range(0, 12, 2)]
    assert torch.allclose(chip(x), sum(quantize_signed(p, 3, (1,)) for p in parts), atol=1e-6)
    whole = deploy(lin, "ideal", overrides={"array.rows": 6, "array.parallel_rows": 6, "array.adc_bits": 3,
                                            "array.ranging": "per_sample"})
    halves = [x[:, t:t + 6] @ lin.weight[:, t:t + 6].T for t in (0, 6)]
    assert torch.allclose(whole(x), sum(quantize_signed(p, 3, (1,)) for p in halves), atol=1e-6)


def test_float_weights_bit_sliced_when_the_device_asks():
    """mapping.weight_bits: per-tile signed integers, each digit on its own cell pair; fewer bits per cell, less
    noise on the weight (the top slice's error dominates, and it holds fewer levels)."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 16, bias=False)
    exact = deploy(lin, "ideal", overrides={"mapping.weight_bits": 4, "mapping.levels": 4})
    w_max = lin.weight.detach().abs().max()
    assert torch.allclose(exact.weight, torch.round(lin.weight / w_max * 7) / 7 * w_max, atol=1e-6)
    spread = {}
    for bpc in (1, 2, 4):
        chips = [deploy(lin, "reram", seed=s, overrides={"mapping.weight_bits": 8, "mapping.levels": 2 ** bpc})
                 for s in range(4)]
        spread[bpc] = torch.stack([weight_errors(lin, c) for c in chips]).std().item()
        assert deploy(lin, "reram", seed=0, overrides={"mapping.weight_bits": 8, "mapping.levels": 2 ** bpc}) \
            .weight.equal(chips[0].weight)  # the same chip from the same seed
    assert spread[1] < spread[2] < spread[4]


def test_chip_config_bits_per_cell_and_parallel_rows_reach_the_accuracy_side():
    from wxy_hw.hardware.chip import ChipConfig

    plain = ChipConfig(device="reram", rows=128).resolve().spec
    assert plain.mapping["weight_bits"] == 0 and plain.mapping["levels"] == 16  # the file's own cells
    assert plain.array["parallel_rows"] == 0
    sliced = ChipConfig(device="reram", rows=128, bits_per_cell=2, parallel_rows=32).resolve().spec
    assert (sliced.mapping["weight_bits"], sliced.mapping["levels"], sliced.array["parallel_rows"]) == (8, 4, 32)
    assert ChipConfig(device="reram", rows=128, parallel_rows=128).resolve().spec.array["parallel_rows"] == 0


def test_a_group_read_alone_drops_less_ir_than_the_whole_tile():
    """IR drop is relative to the tile's fully-on column: driving a quarter of its rows at once draws a quarter."""
    torch.manual_seed(0)
    lin = nn.Linear(128, 4, bias=False).eval()
    inp = torch.ones(2, 128)
    ir = {"ir_drop.beta": 0.2, "array.rows": 128}
    exact = lin(inp)
    whole = deploy(lin, "ideal", overrides=ir)(inp)
    quarters = deploy(lin, "ideal", overrides={**ir, "array.parallel_rows": 32})(inp)
    assert (quarters - exact).abs().sum() < (whole - exact).abs().sum()


def test_clipping_is_applied_once_when_weights_are_bit_sliced():
    torch.manual_seed(0)
    lin = nn.Linear(64, 8, bias=False)
    chip = deploy(lin, "ideal", overrides={"mapping.weight_bits": 8, "mapping.levels": 4, "mapping.clip_sigma": 1.0})
    w = lin.weight.detach()
    clip = min(w.abs().max(), w.std())
    assert torch.isclose(chip.weight.abs().max(), clip, rtol=1e-5)
