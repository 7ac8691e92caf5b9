"""--reuse DIR: a run an earlier comparison trained with exactly the settings asked is adopted (evaluated, not
retrained) with its provenance; other settings, another start or teacher, or a damaged run there are trained here,
and the earlier folder is only read."""
from __future__ import annotations

import json
import shutil
import tomllib

import pytest
import torch

from wxy_hw.checkpoint import CheckpointError

from wxy_hw.run_dir import machine_seconds
from wxy_hw.studies.compare_methods import compare_methods_run
from wxy_hw.studies.earlier_runs import find_earlier
from wxy_hw.utils import atomic_torch_save, file_sha256

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
    assert said.count(f"% (adopted from {earlier.resolve()}/") == 3 and "[compare_methods] 3/3 " in said
    for run in ("teacher/s0", "baseline/s0", "kd/s0"):
        here, there = tmp_path / "new" / run, earlier / run
        manifest, results = _json(here / "manifest.json"), _json(here / "results.json")
        git = _json(there / "manifest.json")["git"]
        # its training time goes with it (the seconds of the machine it took: reproduce --plan counts them)
        source = {"run": str(there.resolve()), "sha256": file_sha256(there / "best.pt"), "commit": git["commit"],
                  "dirty": git["dirty"], "train_seconds": round(machine_seconds(_json(there / "manifest.json")), 1)}
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
    (tmp_path / "rep" / "methods" / "baseline" / "s0").mkdir(parents=True)  # a reproduction's top folder
    (tmp_path / "rep" / "methods" / "baseline" / "s0" / "best.pt").write_bytes(b"")
    (tmp_path / "archive" / "baseline" / "s0").mkdir(parents=True)  # an archive: no checkpoints
    for extra, problem in ((["--reuse", str(tmp_path / "none")], "no such folder"),
                           (["--reuse", str(tmp_path / "rep")], "no <method>/s<seed>/best.pt in it"),
                           (["--reuse", str(tmp_path / "archive")], "an archive under results/ keeps no"),
                           (["--reuse", str(tmp_path), "--retrain"], "give one of them")):
        assert main(["--methods", "baseline", "--dataset", "synthetic", "--out", str(tmp_path / "x"), "--quiet",
                     *extra]) == 2
        err = capsys.readouterr().err
        assert problem in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_an_earlier_run_comes_before_the_zoo_and_a_changed_resume_is_passed_over(earlier, tmp_path, monkeypatch):
    """The earlier folder first (its chain of teacher and students stays one), then the zoo; a run resumed with
    another learning rate than it began with is not the model its settings describe."""
    from wxy_hw.studies import zoo

    folder = tmp_path / "zoo"
    zoo.add(earlier / "baseline" / "s0", "k", "baseline", 50.0, folder=folder)  # the same settings, half precision
    monkeypatch.setenv("WXY_ZOO", str(folder))
    settings = tomllib.loads((earlier / "baseline" / "s0" / "config.toml").read_text())
    assert zoo.match(settings, folder) is not None  # the zoo has it too: the order decides
    compare_methods_run(methods=["baseline"], seeds=[0], out=tmp_path / "new", progress=False, reuse=[str(earlier)],
                        **TINY)
    assert _json(tmp_path / "new" / "baseline" / "s0" / "results.json")["adopted_from"]["run"] == \
        str((earlier / "baseline" / "s0").resolve())
    copy = tmp_path / "copy"
    shutil.copytree(earlier, copy)
    settings = tomllib.loads((copy / "baseline" / "s0" / "config.toml").read_text())
    manifest = _json(copy / "baseline" / "s0" / "manifest.json")
    for resumed in ({"resumed_from": {"epoch": 1, "lr": {"checkpoint": 0.1, "now": 0.05}}},
                    {"resumed_with": {"teacher": {"path": "t.pt", "sha256": "0" * 64}}}):
        (copy / "baseline" / "s0" / "manifest.json").write_text(json.dumps({**manifest, **resumed}))
        assert find_earlier("baseline/s0", settings, [copy]) is None, resumed
    (copy / "baseline" / "s0" / "manifest.json").write_text(json.dumps({**manifest, "resumed_from": {"epoch": 1}}))
    assert find_earlier("baseline/s0", settings, [copy]) is not None  # resumed as it began


def test_a_fine_tune_is_adopted_from_the_same_start_and_a_student_retrained_when_its_teacher_changes(earlier, tmp_path):
    """--init-from: an earlier fine-tune is adopted when its start is the same file by content; a finished student
    whose teacher was trained again since is trained again (not reused, not resumed)."""
    hwa = dict(methods=["hwa"], seeds=[0], progress=False, method_options={"device": "reram"}, **{**TINY, "lr": 0.01})
    compare_methods_run(out=earlier.parent / "hwa", init_from=str(earlier), **hwa)
    compare_methods_run(methods=["baseline"], seeds=[0], out=tmp_path / "digital", progress=False,
                        reuse=[str(earlier)], **TINY)
    compare_methods_run(out=tmp_path / "hwa", init_from=str(tmp_path / "digital"), reuse=[str(earlier.parent / "hwa")],
                        **hwa)
    assert _json(tmp_path / "hwa" / "hwa" / "s0" / "results.json")["adopted_from"]["run"] == \
        str((earlier.parent / "hwa" / "hwa" / "s0").resolve())
    # the start trained again (other bytes): the earlier fine-tune is no longer the model asked for
    compare_methods_run(methods=["baseline"], seeds=[0], out=tmp_path / "digital2", progress=False, **{**TINY, "lr": 0.05})
    shutil.copy(tmp_path / "digital2" / "baseline" / "s0" / "best.pt", tmp_path / "digital" / "baseline" / "s0" / "best.pt")
    compare_methods_run(out=tmp_path / "hwa2", init_from=str(tmp_path / "digital"), reuse=[str(earlier.parent / "hwa")],
                        **hwa)
    assert "adopted_from" not in _json(tmp_path / "hwa2" / "hwa" / "s0" / "results.json")
    # a student whose teacher changed since it finished
    new = tmp_path / "kd"
    compare_methods_run(methods=["kd"], seeds=[0], out=new, progress=False, reuse=[str(earlier)], **TEACHER, **TINY)
    assert "adopted_from" in _json(new / "kd" / "s0" / "results.json")
    payload = torch.load(new / "teacher" / "s0" / "best.pt", weights_only=False)
    name = next(k for k, v in payload["model_state"].items() if v.is_floating_point())
    payload["model_state"][name] = payload["model_state"][name] + 0.01
    atomic_torch_save(payload, new / "teacher" / "s0" / "best.pt")
    compare_methods_run(methods=["kd"], seeds=[0], out=new, progress=False, **TEACHER, **TINY)
    manifest = _json(new / "kd" / "s0" / "manifest.json")
    assert "adopted_from" not in manifest and manifest["teacher"]["sha256"] == file_sha256(new / "teacher" / "s0" / "best.pt")


def test_a_run_trained_before_a_default_changed_is_neither_adopted_nor_reused(earlier, tmp_path):
    """A method default changed since a run was trained (auxiliary_adv's merge_bn): the run is another model, so
    --reuse passes it over, its own comparison refuses it with one line naming the option (as it does an option
    asked otherwise), and an unfinished one is not resumed; asked for explicitly, the old value is that model."""
    copy = tmp_path / "copy"
    shutil.copytree(earlier, copy)
    path = copy / "kd" / "s0" / "manifest.json"
    settings = tomllib.loads((copy / "kd" / "s0" / "config.toml").read_text())
    assert find_earlier("kd/s0", settings, [copy]) is not None  # as trained: adopted
    manifest = _json(path)
    manifest["config"]["method_options"]["temperature"] = 2.0  # as if kd's default temperature had been 2
    path.write_text(json.dumps(manifest))
    assert find_earlier("kd/s0", settings, [copy]) is None
    with pytest.raises(FileExistsError, match=r"temperature: run has 2\.0, now 4\.0\); .*move the run aside"):
        compare_methods_run(methods=["kd"], seeds=[0], out=copy, progress=False, **TEACHER, **TINY)
    with pytest.raises(FileExistsError, match=r"temperature: run has 2\.0, asked 3\.0\)"):
        compare_methods_run(methods=["kd"], seeds=[0], out=copy, progress=False, method_options={"temperature": 3.0},
                            **TEACHER, **TINY)
    path.write_text(json.dumps({**manifest, "status": "running"}))  # begun, never finished: not resumed either
    with pytest.raises(CheckpointError, match=r"its method options differ from those it began with \(temperature: "
                                              r"began with 2\.0, now 4\.0\); move the run aside"):
        compare_methods_run(methods=["kd"], seeds=[0], out=copy, progress=False, **TEACHER, **TINY)
