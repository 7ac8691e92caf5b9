"""--reuse DIR: a run an earlier comparison trained with exactly the settings asked is adopted (evaluated, not
retrained) with its provenance; other settings, another start or teacher, or a damaged run there are trained here,
and the earlier folder is only read."""
from __future__ import annotations

import json
import tomllib

import pytest

from wxy_hw.studies.compare_methods import compare_methods_run
from wxy_hw.studies.earlier_runs import find_earlier
from wxy_hw.utils import file_sha256

from helpers import script

TINY = dict(dataset="synthetic", arch="resnet8", width=0.125, epochs=1, subset=64, batch_size=32,
            max_steps_per_epoch=2, torch_device="cpu", retrain=False)
TEACHER = dict(teacher_arch="resnet8", teacher_width=0.25)


def _json(path):
    return json.loads(path.read_text())


def _stamps(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """An earlier comparison: baseline and kd (with its teacher) over seed 0."""
    out = tmp_path_factory.mktemp("earlier") / "cmp"
    compare_methods_run(methods=["baseline", "kd"], seeds=[0], out=out, progress=False, **TEACHER, **TINY)
    return out


def test_runs_trained_with_the_same_settings_are_adopted_with_their_source(earlier, tmp_path, capsys):
    before = _stamps(earlier)
    compare_methods_run(methods=["baseline", "kd"], seeds=[0], out=tmp_path / "new", progress=True,
                        reuse=[str(earlier)], **TEACHER, **TINY)
    said = capsys.readouterr().out
    assert said.count("evaluated, not retrained (--reuse)") == 3  # the teacher, then baseline and kd
    for run in ("teacher/s0", "baseline/s0", "kd/s0"):
        here, there = tmp_path / "new" / run, earlier / run
        manifest, results = _json(here / "manifest.json"), _json(here / "results.json")
        source = {"run": str(there.resolve()), "sha256": file_sha256(there / "best.pt"),
                  "commit": _json(there / "manifest.json")["git"]["commit"]}
        assert manifest["adopted_from"] == source and results["adopted_from"] == source, run
        assert manifest["status"] == "complete" and not (here / "last.pt").exists()
        assert (here / "best.pt").read_bytes() == (there / "best.pt").read_bytes()
        assert results["test"]["exits"] == pytest.approx(_json(there / "results.json")["test"]["exits"]), run
        assert results["run_dir"] == str(here)  # this folder's run: the student learns from this folder's teacher
    kd = _json(tmp_path / "new" / "kd" / "s0" / "manifest.json")
    assert kd["teacher"]["path"] == str(tmp_path / "new" / "teacher" / "s0" / "best.pt")
    assert kd["teacher"]["sha256"] == _json(earlier / "kd" / "s0" / "manifest.json")["teacher"]["sha256"]
    assert _stamps(earlier) == before  # the earlier folder is only read


def test_other_settings_another_teacher_or_a_damaged_run_are_trained_here(earlier, tmp_path):
    compare_methods_run(methods=["baseline"], seeds=[0], out=tmp_path / "lr", progress=False, reuse=[str(earlier)],
                        **{**TINY, "lr": 0.05})
    assert "adopted_from" not in _json(tmp_path / "lr" / "baseline" / "s0" / "results.json")
    assert (tmp_path / "lr" / "baseline" / "s0" / "last.pt").exists()  # trained here
    # a teacher of other settings: the student learnt from another file, so it is trained, not adopted
    compare_methods_run(methods=["kd"], seeds=[0], out=tmp_path / "teacher", progress=False, reuse=[str(earlier)],
                        **{**TEACHER, "teacher_width": 0.125}, **TINY)
    assert "adopted_from" not in _json(tmp_path / "teacher" / "kd" / "s0" / "results.json")
    # a damaged earlier run is passed over, and left where it is (it is not this command's to set aside)
    settings = tomllib.loads((earlier / "baseline" / "s0" / "config.toml").read_text())
    assert find_earlier("baseline/s0", settings, [earlier]) is not None
    results = earlier / "baseline" / "s0" / "results.json"
    kept = results.read_text()
    try:
        results.write_text(kept[:10])
        assert find_earlier("baseline/s0", settings, [earlier]) is None
        assert results.read_text() == kept[:10] and not list(earlier.glob("baseline/s0.*"))
    finally:
        results.write_text(kept)
    assert find_earlier("baseline/s0", {**settings, "seed": 1}, [earlier]) is None


def test_reuse_problems_are_one_line_before_any_work(tmp_path, capsys):
    main = script("experiments/compare_methods.py").main
    for extra, problem in ((["--reuse", str(tmp_path / "none")], "no such folder"),
                           (["--reuse", str(tmp_path), "--retrain"], "give one of them")):
        assert main(["--methods", "baseline", "--dataset", "synthetic", "--out", str(tmp_path / "x"), "--quiet",
                     *extra]) == 2
        err = capsys.readouterr().err
        assert problem in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
