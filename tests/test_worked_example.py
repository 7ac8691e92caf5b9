"""The README's worked example (examples/any_model.py) runs, and the README shows it verbatim."""
from __future__ import annotations

import re
import runpy
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "any_model.py"


def test_readme_shows_the_example_verbatim():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert EXAMPLE.read_text() in blocks, "README's worked example differs from examples/any_model.py"


@pytest.mark.slow
def test_worked_example_runs_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r".*stay (digital|float)")  # every layer is mapped / quantized
        env = runpy.run_path(str(EXAMPLE), run_name="__main__")
    net, rows, cost, q, again = env["net"], env["rows"], env["cost"], env["q"], env["again"]
    assert net.num_exits == 3 and [r["exit"] for r in rows] == ["conv1", "conv2", "output", "ensemble"]
    assert env["result"].best_val > 80.0
    assert all(r["chips"] == 5 and r["accuracy_mean"] > 60.0 for r in rows)
    # one entry per exit, MACs growing with depth (energy need not: exit 2's head converts more than conv3 + fc)
    assert len(cost) == 3 and all(c["energy_pJ"] > 0 for c in cost)
    assert cost[0]["macs"] < cost[1]["macs"] < cost[2]["macs"]
    x = next(iter(env["val"]))[0]
    assert torch.allclose(again(x).final, q.eval()(x).final, atol=1e-5)  # the reloaded 4-bit model is the same
    assert (tmp_path / "runs" / "any_model" / "best.pt").exists()
    assert capsys.readouterr().out.count("on reram chips") == 3
    runpy.run_path(str(EXAMPLE), run_name="__main__")  # a second run replaces the first run's own outputs
    assert capsys.readouterr().out.count("on reram chips") == 3
