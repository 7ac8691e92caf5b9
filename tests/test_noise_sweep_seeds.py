"""noise_sweep --seeds: one sweep per training seed, then intervals over seeds × chips and paired tests."""
from __future__ import annotations

import csv

import pytest

from wxy_hw.cli.noise_sweep import main


@pytest.mark.slow
def test_seeds_give_nested_intervals_and_paired_tests(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the cached default models of each seed land in tmp_path/runs/cache
    out = tmp_path / "sweep"
    rc = main(["--device", "reram", "--dataset", "synthetic", "--methods", "baseline", "self_distillation",
               "--seeds", "0", "1", "--train-epochs", "1", "--scales", "1", "--times", "86400", "--chips", "2",
               "--samples", "50", "--no-flat", "--bn-recalibrate", "0", "--out", str(out), "--quiet"])
    assert rc == 0
    for s in (0, 1):
        assert (out / f"s{s}" / "sweep.csv").exists() and (out / f"s{s}" / "config.toml").exists()
    assert len(list((tmp_path / "runs" / "cache").glob("synthetic_*_s[01]"))) == 2  # one model set per seed
    rows = list(csv.DictReader(open(out / "summary_seeds.csv")))
    nominal = [r for r in rows if r["method"] == "baseline" and r["sweep"] == "scale"]
    assert len(nominal) == 1 and nominal[0]["seeds"] == "2" and nominal[0]["chips"] == "2"
    assert float(nominal[0]["seed_var"]) >= 0 and float(nominal[0]["chip_var"]) >= 0
    raw = list(csv.DictReader(open(out / "sweep.csv")))
    base = [float(r["accuracy"]) for r in raw if r["method"] == "baseline" and r["sweep"] == "scale"]
    assert abs(float(nominal[0]["accuracy_mean"]) - sum(base) / len(base)) < 1e-9  # balanced: the grand mean
    table = capsys.readouterr().out
    assert "− baseline (p)" in table and "self_distillation" in table


def test_seeds_refuse_given_checkpoints(tmp_path, capsys):
    rc = main(["--seeds", "0", "1", "--checkpoints", str(tmp_path / "x.pt"), "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 2
    assert "--seeds" in capsys.readouterr().err


def test_every_study_nests_its_chips_in_its_seed():
    """Chip ids come from one place (hardware.chip_ids): each seed its own chips, seed 0's the ids studies always
    drew (so archived seed-0 runs read the same chips), and none shared between two seeds."""
    from wxy_hw.hardware import chip_ids
    from wxy_hw.studies.calibrator_adapt import CalibratorConfig
    from wxy_hw.studies.early_exit_energy import chip_id

    assert chip_ids(0, 3) == [0, 1, 2] and chip_ids(2, 2, offset=100) == [2100, 2101]
    assert not set(chip_ids(0, 1000)) & set(chip_ids(1, 1000))
    with pytest.raises(ValueError, match="at most 900 chips"):
        chip_ids(1, 901, offset=100)
    # the calibrator's chips follow its seed unless named; early exit keeps its own block (100 + r at seed 0)
    assert CalibratorConfig(seed=0, chips=3).seeds == [0, 1, 2]
    assert CalibratorConfig(seed=2, chips=3).seeds == [2000, 2001, 2002]
    assert CalibratorConfig(seed=2, chip_seeds=[5, 7]).seeds == [5, 7]
    assert [chip_id(0, r) for r in range(3)] == [100, 101, 102] and chip_id(1, 0) == 1100
    from wxy_hw.studies.calibrator_adapt import _check
    from wxy_hw.studies.config import SettingError
    with pytest.raises(SettingError, match="at most 1000 chips"):
        _check(CalibratorConfig(device="reram", chips=1001))


def test_too_many_chips_for_a_seed_are_refused_in_one_line(tmp_path, capsys):
    rc = main(["--device", "reram", "--dataset", "synthetic", "--chips", "1001", "--out", str(tmp_path / "o"),
               "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--chips" in err and "at most 1000" in err and len(err.splitlines()) == 1
