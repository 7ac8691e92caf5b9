"""One chip described once in chip_study (and --device-set in corruption_robustness).

chip_study deploys each swept ``Chip`` for accuracy and prices the same ``Chip`` for energy, so
``device_set`` (applied to every swept device) and ``adc_bits`` reach both columns of study.csv
(issue 26). corruption_robustness reports accuracy only: ``device_set`` reaches its chips.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from helpers import TINY


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from wxy_hw.studies.train import train_run

    out = tmp_path_factory.mktemp("one_chip_chip_study") / "sd"
    # a dozen steps: a model whose predictions the converters and the cells can move (one step barely can)
    train_run(**{**TINY, "method": "self_distillation", "max_steps_per_epoch": 12, "subset": 384, "epochs": 1}, out=out)
    return out / "best.pt"


def _read(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _chip_study(ckpt: Path, out: Path, **settings) -> dict[str, dict[str, dict[str, float]]]:
    """{adc_bits: {exit: {accuracy, energy, bits_per_cell, digital}}} of one reram chip size."""
    from wxy_hw.studies.chip_study import chip_study_run

    chip_study_run(checkpoints=[str(ckpt)], dataset="synthetic", devices=["reram"], rows=[64], bits_per_cell=None,
                   chips=1, samples=48, torch_device="cpu", out=out, progress=False, log=lambda _: None, **settings)
    by_adc: dict[str, dict[str, dict[str, float]]] = {}
    for r in _read(out / "study.csv"):
        by_adc.setdefault(r["adc_bits"], {})[r["exit"]] = dict(
            accuracy=float(r["accuracy_mean"]), energy=float(r["energy_pJ"]), bits_per_cell=int(r["bits_per_cell"]),
            digital=float(r["digital_accuracy"]))
    return by_adc


@pytest.mark.slow
def test_chip_study_device_set_and_adc_bits_reach_accuracy_and_energy(tiny_checkpoint, tmp_path, monkeypatch):
    import wxy_hw.studies.chip_study as study

    # the cost model's validation (VGG-8 priced at four points) is the same in every run and tested in
    # test_chip.py: one stand-in row here keeps this test to its question
    monkeypatch.setattr(study, "validation_rows", lambda: [dict(reference="stand-in", split="tuning", metric="TOPS/W",
                                                               reference_value=1.0, model_value=1.0, ratio=1.0,
                                                               source="test")])
    plain = _chip_study(tiny_checkpoint, tmp_path / "plain", adc_bits=[3, 8])
    eight, three = plain["8"], plain["3"]
    # a 3-bit ADC: coarser conversions in the accuracy run, cheaper conversions in the energy
    assert {k: v["accuracy"] for k, v in three.items()} != {k: v["accuracy"] for k, v in eight.items()}
    assert all(three[k]["energy"] < eight[k]["energy"] for k in eight)
    # 4 conductance levels on every swept device: coarser weights (accuracy) and 2 bits per cell instead of
    # 4, so twice the slices per weight (energy); the digital model is the same
    levels = _chip_study(tiny_checkpoint, tmp_path / "levels", adc_bits=[8], device_set={"mapping.levels": 4})["8"]
    assert {v["bits_per_cell"] for v in eight.values()} == {4} and {v["bits_per_cell"] for v in levels.values()} == {2}
    assert {k: v["accuracy"] for k, v in levels.items()} != {k: v["accuracy"] for k, v in eight.items()}
    assert all(levels[k]["energy"] > eight[k]["energy"] for k in eight)
    assert all(levels[k]["digital"] == eight[k]["digital"] for k in eight)
    assert "device values set: mapping.levels = 4" in (tmp_path / "levels" / "table.md").read_text()
    assert "device values set" not in (tmp_path / "plain" / "table.md").read_text()


def test_chip_study_device_set_flag_reaches_the_config():
    from wxy_hw.cli import chip_study, config_of, corruption_robustness, parse
    from wxy_hw.studies.chip_study import ChipStudyConfig
    from wxy_hw.studies.corruption_robustness import RobustnessConfig

    for module, cls in ((chip_study, ChipStudyConfig), (corruption_robustness, RobustnessConfig)):
        args = parse(module.build_parser(), ["--device-set", "mapping.levels=4", "--device-set",
                                             "noise.stuck_at_hrs=0.01"], cls)
        assert config_of(cls, args).device_set == {"mapping.levels": 4, "noise.stuck_at_hrs": 0.01}


def _robustness(ckpt: Path, out: Path, **settings) -> dict[tuple[str, str], float]:
    from wxy_hw.studies.corruption_robustness import corruption_robustness_run

    corruption_robustness_run(checkpoints=[str(ckpt)], dataset="synthetic", corruptions=["gaussian_noise"],
                              severities=[1], samples=32, adv_samples=0, devices=["reram"], chips=1, hw_samples=32,
                              hw_severities=[1], cache_dir=str(out.parent / "corruption_cache"), torch_device="cpu",
                              out=out, progress=False, log=lambda _: None, **settings)
    return {(r["corruption"], r["exit"]): float(r["accuracy"]) for r in _read(out / "hardware.csv")}


@pytest.mark.slow
def test_corruption_robustness_device_set_reaches_the_chips(tiny_checkpoint, tmp_path):
    plain = _robustness(tiny_checkpoint, tmp_path / "plain")
    levels = _robustness(tiny_checkpoint, tmp_path / "levels", device_set={"mapping.levels": 4})
    assert plain.keys() == levels.keys() and plain != levels
    assert "device values set: mapping.levels = 4" in (tmp_path / "levels" / "table.md").read_text()
    assert _read(tmp_path / "plain" / "corruption.csv") == _read(tmp_path / "levels" / "corruption.csv")  # digital
