"""compare_methods over seeds: per-seed runs, teachers per seed, intervals and the paired column."""
from __future__ import annotations

import csv

import pytest

from wxy_hw.studies.compare_methods import compare_methods

BUDGET = dict(dataset="synthetic", arch="resnet8", width=0.125, epochs=1, batch_size=64, max_steps_per_epoch=2,
              torch_device="cpu", progress=False)


@pytest.mark.slow
def test_seeds_teachers_intervals_and_reuse(tmp_path):
    table = compare_methods(methods=["baseline", "at"], seeds=[0, 1], out=tmp_path, teacher_arch="resnet8",
                            teacher_width=0.25, **BUDGET)
    for run in ("baseline/s0", "baseline/s1", "at/s0", "at/s1", "teacher/s0", "teacher/s1"):
        assert (tmp_path / run / "results.json").exists(), run
    lines = table.splitlines()
    assert "seeds 0, 1" in lines[0] and "final − baseline (p)" in lines[1]
    at_row = next(line for line in lines if line.startswith("| at "))
    assert at_row.count("±") == 2 and "(" in at_row  # final exit ± CI, and the paired difference ± CI (p)
    assert "Ensemble" in lines[1] and "Final" in lines[1]  # single-exit methods only: one accuracy column
    rows = list(csv.DictReader((tmp_path / "comparison.csv").open()))
    assert sorted((r["method"], r["seed"]) for r in rows) == [("at", "0"), ("at", "1"), ("baseline", "0"),
                                                              ("baseline", "1")]
    stamp = (tmp_path / "at" / "s1" / "results.json").stat().st_mtime_ns
    compare_methods(methods=["baseline", "at"], seeds=[0, 1], out=tmp_path, teacher_arch="resnet8",
                    teacher_width=0.25, **BUDGET)
    assert (tmp_path / "at" / "s1" / "results.json").stat().st_mtime_ns == stamp  # finished runs are reused


def test_teacher_needed_and_duplicate_seeds_are_one_line(tmp_path):
    with pytest.raises(ValueError, match="need a teacher"):
        compare_methods(methods=["baseline", "kd"], seeds=[0], out=tmp_path, **BUDGET)
    with pytest.raises(ValueError, match="lists a seed twice"):
        compare_methods(methods=["baseline"], seeds=[0, 0], out=tmp_path, **BUDGET)
    assert not any(tmp_path.iterdir())  # refused before any work
