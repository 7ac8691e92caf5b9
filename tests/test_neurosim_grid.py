"""validation/neurosim_grid.py on a stored sample: two NeuroSim V1.3 results (our VGG-11 w0.25 on a seeded random
image, NeuroSim's default chip and a 3-bit ADC) compared with the cost model, part by part. Nothing here runs
NeuroSim; `make validate` runs the whole grid. The recorded total ratios pin where the model stands against
NeuroSim: a change of the cost model that moves them shows up here and in validation/results/."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from validation import neurosim_grid as grid  # noqa: E402

SAMPLE = json.loads((Path(__file__).parent / "data" / "neurosim_grid_sample.json").read_text())


def test_the_stored_sample_compares_part_by_part_as_recorded():
    rows = [r for item in SAMPLE["raw"]
            for r in grid.rows_of(item["net"], item["setting"],
                                  grid.our_report(item["net"], item["setting"], image=SAMPLE["image"]),
                                  item["neurosim"])]
    parts = {r["part"] for r in rows}
    assert parts == set(grid.ENERGY_PARTS + grid.AREA_PARTS)
    for r in rows:
        assert r["ratio"] == pytest.approx(r["ours"] / r["neurosim"]) or math.isnan(r["ratio"])
    totals = [r["ratio"] for r in rows if r["part"] == "total"]
    assert totals == pytest.approx(SAMPLE["total_ratios"], rel=0.01)
    # NeuroSim's printed parts add up: ADC (array read inside) + accumulation + other = dynamic
    for item in SAMPLE["raw"]:
        n = item["neurosim"]
        assert n["adc_pJ"] + n["accum_pJ"] + n["other_pJ"] == pytest.approx(n["dynamic_pJ"], rel=1e-3)


def test_the_default_grid_changes_one_setting_at_a_time():
    settings = grid.grid()
    assert settings[0] == grid.DEFAULT
    for s in settings[1:]:
        assert sum(s[k] != grid.DEFAULT[k] for k in grid.DEFAULT) == 1, s
    assert len(grid.grid(full=True)) == math.prod(len(v) for v in grid.AXES.values())


def test_summary_counts_configurations_within_the_targets():
    rows = [dict(net="n", config=f"c{i}", part="total", ours=r, neurosim=1.0, ratio=r) for i, r in enumerate((1.0, 2.0))]
    assert "total energy: 1/2 within 0.8-1.25 (ratios 1.00-2.00)" in grid.summarize(rows)
