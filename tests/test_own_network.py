"""The walk of docs/models_and_methods.md ("your own network, step by step"), as a new user runs it (issue 29):
examples/own_network.py trains a hand-written 1-D and 2-D network from ordinary DataLoaders, evaluates them on
reram and pcm chips through both backends, joins accuracy and energy per exit by one name, saves and reloads."""
from __future__ import annotations

import runpy
import warnings

from helpers import ROOT


def test_own_network_walk_runs_from_the_docs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r".*stay (digital|float)")  # every layer goes on the chip
        env = runpy.run_path(str(ROOT / "examples" / "own_network.py"), run_name="__main__")
    results = env["results"]
    assert sorted(results) == sorted((n, d, b) for n in ("1-D", "2-D") for d in ("reram", "pcm")
                                     for b in ("native", "aihwkit"))
    for (name, device, backend), rows in results.items():
        assert [r["exit"] for r in rows] == (["block1", "output"] if name == "1-D" else ["conv1", "output"])
        assert all(r["chips"] == 3 and r["energy_pJ"] > 0 and r["index"] in (1, 2) for r in rows)
        assert rows[-1]["accuracy_mean"] >= 70.0, (name, device, backend, rows[-1])  # ~99 % measured
    # the two backends describe the same chip: the same cost, exit by exit
    for name in ("1-D", "2-D"):
        for device in ("reram", "pcm"):
            assert [r["energy_pJ"] for r in results[name, device, "native"]] == \
                [r["energy_pJ"] for r in results[name, device, "aihwkit"]]
    assert (tmp_path / "runs" / "own_network_1-D" / "best.pt").exists()
    assert capsys.readouterr().out.count("exit output") == 8
