"""quant_sweep runs every (weight bits, activation bits) point on one chip: the accuracy deploys what the energy
prices, so ``--device-set`` values and ``--adc-bits`` reach both (issue 26)."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from helpers import TINY, check_device_set_and_adc_bits_reach_both
from wxy_hw.cli.quant_sweep import build_parser
from wxy_hw.studies.quant_sweep import QuantSweepConfig


def test_a_point_chip_carries_the_device_set_the_adc_and_the_point_bits():
    conf = QuantSweepConfig(device="reram", device_set={"mapping.levels": 4}, adc_bits=5)
    chip = conf.chip(4, 6)
    assert chip.spec.mapping["levels"] == 4 and (chip.config.weight_bits, chip.config.act_bits) == (4, 6)
    assert (chip.spec.array["adc_bits"], chip.spec.array["dac_bits"]) == (5, 6)  # the accuracy run's converters
    # a float model sits on the device's own cells: one 4-level pair per weight holds 2 bits and the sign
    assert (conf.chip(32, None).config.weight_bits, conf.chip(32, None).config.act_bits) == (3, 8)
    ideal = QuantSweepConfig().chip(8, 8)  # reram's file has no converters: ideal in accuracy, priced at 8 bits
    assert ideal.config.ideal_converters and ideal.spec.array["adc_bits"] == 0 and ideal.config.adc_bits == 8
    args = build_parser().parse_args(["--device-set", "mapping.levels=4", "--adc-bits", "5"])
    assert (args.device_set, args.adc_bits) == ({"mapping.levels": 4}, 5)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from wxy_hw.studies.train import train_run

    out = tmp_path_factory.mktemp("one_chip_quant") / "sd"
    train_run(**{**TINY, "method": "self_distillation"}, out=out)
    return out / "best.pt"


def _quant_sweep(ckpt: Path, out: Path, **chip) -> tuple[dict[tuple, float], dict[tuple, float]]:
    """Accuracy and energy of the device rows by (mode, weight bits, exit)."""
    from wxy_hw.studies.quant_sweep import quant_sweep_run

    quant_sweep_run(checkpoints=[str(ckpt)], dataset="synthetic", device="reram", weight_bits=[4], act_bits=[8],
                    chips=2, samples=32, calib_batches=1, torch_device="cpu", out=out, progress=False,
                    log=lambda _: None, **chip)
    with open(out / "quant_sweep.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["setting"] == "reram"]
    key = lambda r: (r["mode"], r["weight_bits"], r["exit"])  # noqa: E731
    return ({key(r): float(r["accuracy_mean"]) for r in rows},
            {key(r): float(r["energy_pJ"]) for r in rows if r["energy_pJ"]})


@pytest.mark.slow
def test_quant_sweep_device_set_and_adc_bits_reach_accuracy_and_energy(tiny_checkpoint, tmp_path):
    # 4-level cells, two per weight: the float model's weights take two cells (the same 16 steps), the 4-bit PTQ
    # weights are bit-sliced into two 2-bit slices (their errors change): more cells for every row
    check_device_set_and_adc_bits_reach_both(lambda out, **chip: _quant_sweep(tiny_checkpoint, out, **chip), tmp_path,
                                             more_cells={"mapping.levels": 4, "mapping.cells_per_weight": 2})
