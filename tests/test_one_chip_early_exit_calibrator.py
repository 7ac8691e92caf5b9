"""One chip in early_exit_energy and calibrator_adapt: what accuracy deploys is what the energy prices (issue 26).

``device_set`` (4 conductance levels: coarser cells, more slices per weight) and ``adc_bits`` reach both the
accuracy and the energy outputs of each study.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from helpers import TINY


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from wxy_hw.studies.train import train_run

    out = tmp_path_factory.mktemp("one_chip_ee_cal") / "baseline"
    train_run(**TINY, out=out)  # one exit: no threshold search, the chips and the cost model are what runs
    return out / "best.pt"


def _read(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _early_exit(ckpt: Path, out: Path, **chip) -> tuple[list[float], list[float]]:
    from wxy_hw.studies.early_exit_energy import early_exit_run

    early_exit_run(checkpoints=[str(ckpt)], dataset="synthetic", device="reram", chips=2, samples=64,
                   torch_device="cpu", out=out, progress=False, log=lambda _: None, **chip)
    rows = _read(out / "per_exit.csv")
    return [float(r["device_accuracy_mean"]) for r in rows], [float(r["device_energy_pJ"]) for r in rows]


@pytest.mark.slow
def test_early_exit_device_set_and_adc_bits_reach_accuracy_and_energy(tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint
    acc, energy = _early_exit(ckpt, tmp_path / "plain")
    acc_set, energy_set = _early_exit(ckpt, tmp_path / "set", device_set={"mapping.cells_per_weight": 2})
    assert acc_set != acc and all(s > e for s, e in zip(energy_set, energy))  # two pairs per weight: more cells
    acc_adc, energy_adc = _early_exit(ckpt, tmp_path / "adc", adc_bits=3)
    assert acc_adc != acc and all(a < e for a, e in zip(energy_adc, energy))  # cheaper, coarser conversions
    assert "8-bit ADC" in (tmp_path / "plain" / "table.md").read_text()
    assert "3-bit ADC" in (tmp_path / "adc" / "table.md").read_text()


def _calibrator(ckpt: Path, out: Path, **chip) -> tuple[dict[int, float], float]:
    from wxy_hw.studies.calibrator_adapt import calibrator_adapt_run

    result = calibrator_adapt_run(source="synthetic", target="none", device="reram", chips=2, epochs=1, samples=64,
                                  checkpoints=[str(ckpt)], torch_device="cpu", out=out, progress=False,
                                  log=lambda _: None, **chip)
    accuracy = {int(r["chip"]): float(r["no calibration"]) for r in _read(out / "chips.csv")}
    return accuracy, result["cost"]["classifier_energy_pJ"]


@pytest.mark.slow
def test_calibrator_device_set_and_adc_bits_reach_chip_accuracy_and_energy(tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint
    acc, energy = _calibrator(ckpt, tmp_path / "plain")
    acc_set, energy_set = _calibrator(ckpt, tmp_path / "set", device_set={"mapping.cells_per_weight": 2})
    assert acc_set != acc and energy_set > energy  # two pairs per weight: finer weights on more cells
    acc_adc, energy_adc = _calibrator(ckpt, tmp_path / "adc", adc_bits=3)
    assert acc_adc != acc and energy_adc < energy
    # the file's converters by default: ideal in accuracy, priced at 8 bits; the table says so
    assert "ideal converters in accuracy; energy priced with 8-bit ADCs" in (tmp_path / "plain" / "table.md").read_text()
    assert "3-bit ADC" in (tmp_path / "adc" / "table.md").read_text()
