"""User errors of the scripts and of reproduce / codesign inputs: one line "error: ..." (exit 2), naming the problem
and the fix, never a traceback, and nothing written before the refusal.

Every test builds its bad input itself and stops before any training: seconds."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from wxy_hw.cli import codesign as codesign_cli
from wxy_hw.cli import reproduce as reproduce_cli

from helpers import script


def one_line(capsys) -> str:
    """The single error line a refused command printed on stderr."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- scripts/train_zoo.py -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, said", [
    (["--methods", "nope"], "--methods: unknown method 'nope'"),
    (["--methods", "kd"], "--methods kd: learns from a teacher"),
    (["--methods", "baseline", "baseline"], "--methods lists baseline more than once"),
    (["--device", "nosuch"], "--device: unknown device 'nosuch'"),
    (["--dataset", "nope"], "--dataset: unknown dataset 'nope'; give one of"),
    (["--epochs", "0"], "--epochs: expected an integer ≥ 1"),
    (["--subset", "0"], "--subset: expected an integer ≥ 1"),
    (["--seeds", "-1"], "--seeds: expected a seed"),
    (["--seeds", "0", "0"], "--seeds lists 0 more than once"),
    (["--workers", "0"], "--workers: expected an integer ≥ 1"),
    (["--torch-device", "bogus"], "--torch-device auto, cpu"),
    (["--reproduce", "nope"], "--reproduce nope: no such budget; give one of"),
    (["--reproduce", "smoke", "--methods", "nope"], "--methods: unknown method"),
    (["--reproduce", "smoke", "--epochs", "2"], "--epochs: the main shelf's recipe"),
    (["--finished-in", "x"], "give --reproduce BUDGET too"),
])
def test_train_zoo_refuses_a_bad_argument_in_one_line_before_any_folder(argv, said, tmp_path, monkeypatch, capsys):
    train_zoo = script("scripts/train_zoo.py")
    monkeypatch.chdir(tmp_path)  # the default --cache (runs/zoo_train) is relative: it would land here
    monkeypatch.setenv("WXY_ZOO", str(tmp_path / "unused"))
    cpu = [] if "--torch-device" in argv else ["--torch-device", "cpu"]
    assert train_zoo.main([*argv, "--zoo", str(tmp_path / "zoo"), *cpu]) == 2
    assert said in one_line(capsys)
    assert files_under(tmp_path) == []  # no cache folder (nope_resnet18_..., ..._e0_...), no zoo


def test_train_zoo_refuses_a_file_as_its_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WXY_ZOO", str(tmp_path / "unused"))  # main sets it to --zoo: restored after the test
    (tmp_path / "cache").write_text("")
    assert script("scripts/train_zoo.py").main(["--cache", str(tmp_path / "cache"), "--zoo", str(tmp_path / "z")]) == 2
    assert "--cache" in one_line(capsys) and not (tmp_path / "z").exists()


@pytest.mark.parametrize("index, said", [
    ('model = [ {id = "x"', "cannot be read"),
    ('[[model]]\nid = "a"\nkey = "nokey"\nname = "b"\nsha256 = "c"\ntest_accuracy = 1\nval_accuracy = 1\n',
     "not <key>_s<seed>"),
])
def test_train_zoo_table_of_a_corrupt_index_is_one_line(index, said, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WXY_ZOO", str(tmp_path / "unused"))  # main sets it to --zoo: restored after the test
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "index.toml").write_text(index)
    assert script("scripts/train_zoo.py").main(["--table", "--zoo", str(tmp_path / "zoo")]) == 2
    line = one_line(capsys)
    assert said in line and "git checkout zoo/" in line


# --- scripts/claims_table.py --------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, said", [
    ("[1]", "holds 1 as claim #0, not an object"),
    ('[{"family": "seed"}]', "holds claim #0 without section, claim, seed_value, ours, verdict"),
    ('{"a": 1}', "holds an object, not an array"),
    ('[{"section": "x"', "is truncated"),
    (None, "is a folder, not a reproduction's claims file"),
])
def test_claims_table_refuses_a_malformed_claims_file_in_one_line(content, said, tmp_path, capsys):
    path = tmp_path / "claims.json"
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    assert script("scripts/claims_table.py").main([str(tmp_path)]) == 2
    line = one_line(capsys)
    assert str(path) in line and said in line and ("rerun the reproduction" in line or "give a finished" in line)


def test_claims_table_of_a_folder_without_claims_names_the_fix(tmp_path, capsys):
    assert script("scripts/claims_table.py").main([str(tmp_path / "none")]) == 2
    assert "does not exist: give a finished reproduction's folder" in one_line(capsys)


# --- reproduce.py --plan and --seeds ------------------------------------------------------------------------------
@pytest.mark.parametrize("make, said", [
    (lambda p: p.write_bytes(b"\0"), "is a file, not a folder"),
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "holds no claims.json"),
])
def test_reproduce_plan_needs_a_finished_reproduction_folder(make, said, tmp_path, capsys):
    pilot = tmp_path / "heads.pt"
    make(pilot)
    assert reproduce_cli.main(["--plan", str(pilot)]) == 2
    line = one_line(capsys)
    assert f"--plan {pilot} {said}" in line and "finished reproduction folder (with claims.json)" in line
    assert "runs/reproduce/small" in line


@pytest.mark.parametrize("budget", ["smoke", "small", "converged"])
def test_reproduce_refuses_a_seed_given_twice_at_every_budget(budget, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default --out is runs/reproduce/<budget>: nothing may appear here
    assert reproduce_cli.main(["--budget", budget, "--seeds", "0", "0", "0", "--torch-device", "cpu"]) == 2
    assert "--seeds lists 0 more than once: give each seed once" in one_line(capsys)
    assert files_under(tmp_path) == []


# --- codesign.py --resume -----------------------------------------------------------------------------------------
def _stopped_search(folder: Path) -> Path:
    """A co-design run folder as a killed search leaves it (its manifest), without its study.db."""
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"tool": "wxy_hw", "kind": "codesign", "status": "interrupted"}))
    return folder


def _truncated_db(path: Path) -> None:
    """A study.db cut short (a disk full, a copy stopped half way): an SQLite file with Optuna's first table, whose
    later pages are gone (Optuna's own schema takes seconds to create; the damage is SQLite's either way)."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE studies (study_id INTEGER PRIMARY KEY, study_name TEXT)")
        db.executemany("INSERT INTO studies (study_name) VALUES (?)", [("designs" + "x" * 400,)] * 200)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize("damage, said", [
    (lambda p: p.write_bytes(b"not a database at all " * 200), "is not a readable SQLite database"),
    (_truncated_db, "is not a readable SQLite database (database disk image is malformed)"),
    (lambda p: sqlite3.connect(p).execute("CREATE TABLE notes (x)").connection.commit(), "without Optuna's tables"),
])
def test_codesign_resume_from_a_damaged_study_db_is_one_line_naming_it(damage, said, tmp_path, capsys):
    out = _stopped_search(tmp_path / "run")
    damage(out / "study.db")
    before = (out / "study.db").read_bytes()
    assert codesign_cli.main(["--resume", "--out", str(out), "--trials", "1", "--torch-device", "cpu"]) == 2
    line = one_line(capsys)
    assert f"{out / 'study.db'} " in line and said in line and "--overwrite" in line
    assert (out / "study.db").read_bytes() == before  # refused, never written into


def test_codesign_resume_without_an_earlier_search_is_refused(tmp_path, capsys):
    """As train.py --resume without a last.pt: --resume on a folder holding no search refuses, not starts one."""
    new = tmp_path / "new"
    assert codesign_cli.main(["--resume", "--out", str(new), "--trials", "1", "--torch-device", "cpu"]) == 2
    assert "holds no search to continue" in (line := one_line(capsys)) and "without --resume" in line
    assert not new.exists() or files_under(new) == []
    out = _stopped_search(tmp_path / "run")  # a search killed before its study.db: --overwrite starts it again
    assert codesign_cli.main(["--resume", "--out", str(out), "--trials", "1", "--torch-device", "cpu"]) == 2
    assert "with --overwrite instead of --resume" in one_line(capsys)
    assert not (out / "study.db").exists()


def test_a_reproduction_cut_to_methods_that_learn_from_no_teacher_is_planned(tmp_path):
    """The budget's teacher architecture trains nothing for them: not a reason to refuse --methods scan ada."""
    from wxy_hw.studies.compare_methods import plan_comparison

    train_zoo = script("scripts/train_zoo.py")
    args = train_zoo.build_parser().parse_args(["--reproduce", "converged", "--methods", "scan", "ada",
                                                "--cache", str(tmp_path / "cache")])
    conf = train_zoo.check_args(args)
    assert conf is not None and conf.teacher_arch is not None and list(conf.methods) == ["scan", "ada"]
    plan = plan_comparison(conf, tmp_path / "cache", progress=False)
    assert plan.wants_teacher == [] and not (tmp_path / "cache").exists()
