"""Damaged files name themselves (issue 27): one reader for what the tool wrote, reproduce and compare_methods redo
what no longer reads back, a moved reproduction is reused, and every advice names a flag its command has."""
from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import wxy_hw
from wxy_hw.checkpoint import CheckpointError, read_checkpoint
from wxy_hw.cli import compare_methods as compare_cli
from wxy_hw.cli import fail, noise_sweep as noise_sweep_cli, reproduce as reproduce_cli, train as train_cli
from wxy_hw.studies import reproduce as reproduce_mod
from wxy_hw.studies.config import SettingError
from wxy_hw.studies.result import StudyResult
from wxy_hw.studies.spine import cached_checkpoint
from wxy_hw.studies.compare_methods import compare_methods
from wxy_hw.studies.train import RERUN
from wxy_hw.train import Trainer
from wxy_hw.utils import DamagedFileError, read_csv, read_json

from helpers import script

TINY = dict(dataset="synthetic", arch="resnet8", width=0.125, epochs=1, batch_size=64, max_steps_per_epoch=2,
            torch_device="cpu", progress=False)
TINY_FLAGS = ["--dataset", "synthetic", "--arch", "resnet8", "--width", "0.125", "--epochs", "1", "--batch-size", "64",
              "--max-steps", "2", "--torch-device", "cpu", "--quiet"]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _cut(path: Path, keep: int) -> None:
    """Truncate ``path`` to its first ``keep`` bytes (negative: drop that many from the end)."""
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


# --- case 1: one reader ----------------------------------------------------------------------------------------
def test_read_json_names_the_file_the_problem_and_the_fix(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"a": [1, 2], "b": {"c": 3}}, indent=2) + "\n")
    assert read_json(path, fix="train it again") == {"a": [1, 2], "b": {"c": 3}}
    _cut(path, -12)
    with pytest.raises(DamagedFileError) as info:
        read_json(path, fix="train it again")
    assert str(info.value) == f"{path} is truncated (it ends mid-document); train it again"
    assert isinstance(info.value, ValueError)  # the CLIs report ValueError as one line, exit 2
    assert fail(info.value) == 2 and _one_line(capsys.readouterr().err) == f"error: {info.value}"
    for text, problem in [("", "is empty"), ('{"a": 1} {"b": 2}\n', "is not valid JSON (Extra data"),
                          ("[1, 2]\n", "holds an array, not an object as written")]:
        path.write_text(text)
        with pytest.raises(DamagedFileError, match=re.escape(f"{path} {problem}")):
            read_json(path, fix="x")
    assert read_json(path, fix="x", kind=list) == [1, 2]
    path.write_bytes(b"\x80\x81PK\x03\x04")
    with pytest.raises(DamagedFileError, match="is not text"):
        read_json(path, fix="x")
    with pytest.raises(FileNotFoundError):  # absent is the caller's business, not damage
        read_json(tmp_path / "absent.json", fix="x")


def test_read_csv_refuses_a_cut_row_a_cut_file_and_a_missing_column(tmp_path):
    path = tmp_path / "sweep.csv"
    path.write_text("method,exit,accuracy\r\nbaseline,1,90.5\r\nsd,1,91.25\r\n", newline="")
    rows = read_csv(path, fix="f", columns=["method", "accuracy"])
    assert rows[1] == {"method": "sd", "exit": "1", "accuracy": "91.25"}
    _cut(path, -4)
    with pytest.raises(DamagedFileError, match=re.escape(f"{path} is truncated (its last line has no line end); f")):
        read_csv(path, fix="f")
    path.write_text("method,exit,accuracy\r\nbaseline,1,90.5\r\nsd,1\r\n", newline="")
    with pytest.raises(DamagedFileError, match="line 3 has 2 fields where the header has 3"):
        read_csv(path, fix="f")
    path.write_text("method,exit\r\nbaseline,1\r\n", newline="")
    with pytest.raises(DamagedFileError, match="has no column accuracy"):
        read_csv(path, fix="f", columns=["method", "accuracy"])
    path.write_text("")
    with pytest.raises(DamagedFileError, match="is empty"):
        read_csv(path, fix="f")
    path.write_text("\r\n", newline="")  # what write_rows_csv writes for no rows
    assert read_csv(path, fix="f") == []


def test_no_json_or_csv_read_bypasses_the_reader():
    """Every JSON / CSV read of a file the tool wrote goes through wxy_hw.utils.read_json / read_csv."""
    root = Path(wxy_hw.__file__).parent
    skip = {root / "utils.py", root / "results.py", root / "run_dir.py"}  # the reader itself; run dirs: another owner
    found = [f"{p.relative_to(root)}:{n}" for p in sorted(root.rglob("*.py")) if p not in skip
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"json\.loads?\(|csv\.(Dict)?[Rr]eader\(", line)]
    assert found == [], found


# --- case 2: what compare_methods and the cache reuse must read back ------------------------------------------------
def test_compare_methods_retrains_a_run_whose_results_or_best_pt_are_damaged(tmp_path, capsys):
    compare_methods(methods=["baseline"], seeds=[0], out=tmp_path, **TINY)
    run = tmp_path / "baseline" / "s0"
    _cut(run / "results.json", 40)
    capsys.readouterr()
    compare_methods(methods=["baseline"], seeds=[0], out=tmp_path, **TINY)
    line = capsys.readouterr().out.strip().splitlines()[0]
    assert line == f"[compare_methods] training {run} again (the damaged run is kept as s0.damaged): results.json " \
                   "is truncated (it ends mid-document)", line
    assert read_json(run / "results.json", fix="")["test"] and (tmp_path / "baseline" / "s0.damaged").is_dir()
    _cut(run / "best.pt", 500)  # before: "re-run training", and a re-run reused the broken run
    compare_methods(methods=["baseline"], seeds=[0], out=tmp_path, **TINY)
    line = capsys.readouterr().out.strip().splitlines()[0]
    assert "s0.damaged2" in line and f"{run / 'best.pt'} is truncated" in line, line
    read_checkpoint(run / "best.pt")
    stamp = (run / "results.json").stat().st_mtime_ns
    compare_methods(methods=["baseline"], seeds=[0], out=tmp_path, **TINY)
    assert (run / "results.json").stat().st_mtime_ns == stamp and "again" not in capsys.readouterr().out


def test_a_damaged_cache_manifest_is_set_aside_and_retrained(tmp_path, capsys):
    budget = dict(arch="resnet8", width=0.125, epochs=1, subset=200, batch_size=64, max_steps_per_epoch=2, torch_device="cpu")
    best = cached_checkpoint("baseline", "synthetic", cache_dir=tmp_path, progress=False, **budget)
    _cut(best.parent / "manifest.json", 100)  # before: "Expecting value: line 7 column 2", no file named
    capsys.readouterr()
    assert cached_checkpoint("baseline", "synthetic", cache_dir=tmp_path, progress=False, **budget) == best
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"[wxy_hw] training {best.parent} again") and "manifest.json is truncated" in first, first
    assert best.parent.with_name("baseline.damaged").is_dir()
    assert read_json(best.parent / "manifest.json", fix="")["status"] == "complete"
    read_checkpoint(best)


# --- cases 2 and 3: reproduce verifies a step before reusing it; a moved folder is reused ----------------------------
class FakeSteps:
    """The reproduction's study runners (``RUNNERS``): every study writes a manifest, a CSV and a binary file into
    its folder; a study in ``ending`` prints a line on stderr and raises its exception instead."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Path]] = []  # (study, config, out)
        self.ending: dict[str, BaseException] = {}

    def runners(self) -> dict[str, Any]:
        return {study: self._runner(study) for study in reproduce_mod.RUNNERS}

    def _runner(self, study: str):
        def run(config, *, out: Path, progress: bool, announce=None) -> StudyResult:
            import sys

            self.calls.append((study, config, Path(out)))
            if study in self.ending:
                print("warning: a line the step prints on its way", file=sys.stderr)
                raise self.ending[study]
            out.mkdir(parents=True, exist_ok=True)
            (out / "manifest.json").write_text(json.dumps({"tool": "wxy_hw", "kind": config.KIND, "status": "complete"}))
            (out / "rows.csv").write_text("method,accuracy\r\nbaseline,90.5\r\n", newline="")
            (out / "model.bin").write_bytes(bytes(range(256)) * 8)
            return StudyResult(out, f"{study} table")
        return run

    def studies(self) -> list[str]:
        return [s for s, _, _ in self.calls]


@pytest.fixture
def fake(monkeypatch):
    steps = FakeSteps()
    monkeypatch.setattr(reproduce_mod, "RUNNERS", steps.runners())

    def no_claims(self) -> None:
        self.claims, self.claims_with_tests = [], []

    monkeypatch.setattr(reproduce_mod.Reproduction, "collect", no_claims)
    monkeypatch.setattr(reproduce_mod, "forest_plot", lambda tests, path: path)
    monkeypatch.setattr(reproduce_mod, "write_report",
                        lambda out, claims, **kw: (out / "report.html", out / "report.md"))
    return steps


def _reproduce(out: Path, *extra: str) -> int:
    return reproduce_cli.main(["--budget", "smoke", "--out", str(out), "--quiet", *extra])


def test_reproduce_reruns_exactly_the_steps_whose_files_are_damaged(tmp_path, fake, capsys):
    out = tmp_path / "rep"
    assert _reproduce(out) == 0 and len(fake.calls) == 12
    steps = read_json(out / "steps.json", fix="")
    assert steps["noise_sweep/reram/s0"]["files"]["model.bin"]["size"] == 2048
    _cut(out / "noise_sweep" / "reram" / "s0" / "rows.csv", -3)  # before: reused, the claims read a cut table
    _cut(out / "early_exit" / "s1" / "model.bin", 1000)
    flipped = out / "robustness" / "s0" / "model.bin"
    flipped.write_bytes(b"\xff" + flipped.read_bytes()[1:])
    _cut(out / "calibrator_chips" / "s1" / "manifest.json", 10)
    fake.calls.clear()
    capsys.readouterr()
    assert _reproduce(out) == 0
    assert sorted(fake.studies()) == ["calibrator_adapt", "compare_methods", "compare_methods", "corruption_robustness",
                                      "early_exit_energy", "noise_sweep"]
    lines = capsys.readouterr().out.splitlines()
    for expected in ("rerunning noise_sweep/reram/s0: rows.csv is truncated (its last line has no line end)",
                     "rerunning early_exit/s1: model.bin has 1000 bytes, 2048 when the step finished",
                     "rerunning robustness/s0: model.bin changed since the step finished (its sha256 differs)",
                     "rerunning calibrator_chips/s1: manifest.json is truncated"):
        assert sum(expected in line for line in lines) == 1, (expected, "\n".join(lines))
    assert (out / "noise_sweep" / "reram" / "s0.damaged" / "rows.csv").is_file()  # kept, not deleted
    fake.calls.clear()
    assert _reproduce(out) == 0 and fake.studies() == ["compare_methods"] * 2  # mended: reused from now on


def test_a_truncated_steps_json_is_one_line_naming_it_and_the_fix(tmp_path, fake, capsys):
    out = tmp_path / "rep"
    assert _reproduce(out) == 0
    _cut(out / "steps.json", 200)
    capsys.readouterr()
    assert _reproduce(out) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {out / 'steps.json'} is truncated") and "delete it to rerun every step" in line


def test_a_moved_reproduction_reruns_no_step(tmp_path, fake):
    first, moved = tmp_path / "a" / "rep", tmp_path / "b" / "moved"
    assert _reproduce(first) == 0
    early = next(config for study, config, _ in fake.calls if study == "early_exit_energy")
    assert str(first / "methods" / "baseline" / "s0" / "best.pt") in early.checkpoints  # run against the folder
    steps = read_json(first / "steps.json", fix="")
    assert "noise_sweep/reram/s0" in steps and not any(str(tmp_path) in json.dumps(v) for v in steps.values())
    script = (first / "commands.sh").read_text()
    assert 'cd "$(dirname "$0")"' in script and str(tmp_path) not in script
    assert "--out noise_sweep/reram/s0" in script and "--checkpoints methods/baseline/s0/best.pt" in script
    assert subprocess.run(["sh", "-n", str(first / "commands.sh")]).returncode == 0
    moved.parent.mkdir()
    shutil.move(first, moved)
    fake.calls.clear()
    assert _reproduce(moved) == 0
    # compare_methods always runs (it reuses its own training runs): nothing else reran
    assert fake.studies() == ["compare_methods"] * 2
    assert fake.calls[0][2] == moved / "methods"


# --- case 4: Ctrl-C ends in one line that says what to do, with a flag or action the command has --------------------
def test_ctrl_c_in_a_reproduce_step_is_one_line_and_exit_130(tmp_path, fake, capsys):
    fake.ending["early_exit_energy"] = KeyboardInterrupt("training in x stopped; start it again with --overwrite")
    assert _reproduce(tmp_path / "rep") == 130
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: a line the step prints")  # the step's other lines pass through
    line = _one_line(captured.err.split("\n", 1)[1])
    assert line == f"interrupted: reproduce stopped in step early_exit/s0; {RERUN}", line
    fake.ending["early_exit_energy"] = CheckpointError("checkpoint methods/scan/s0/best.pt does not exist")
    assert _reproduce(tmp_path / "rep") == 2
    line = _one_line(capsys.readouterr().err.split("\n", 1)[1])
    assert line.startswith("error: step early_exit/s0 failed: checkpoint methods/scan/s0/best.pt does not "
                           f"exist; fix that and {RERUN} (the step alone, from "), line
    assert line.endswith(" --out early_exit/s0 --quiet)"), line  # the command that runs the step alone
    fake.ending["early_exit_energy"] = SettingError("chips", "must be ≥ 1, got 0")  # named as its command names it
    assert _reproduce(tmp_path / "rep") == 2
    line = _one_line(capsys.readouterr().err.split("\n", 1)[1])
    assert line.startswith("error: step early_exit/s0 failed: --chips must be ≥ 1, got 0; fix that"), line


def _interrupt_training(monkeypatch, *, with_last: bool) -> None:
    def stopped(self, *args, **kwargs):
        if with_last:
            self.last_path.parent.mkdir(parents=True, exist_ok=True)
            self.last_path.write_bytes(b"")  # only its presence decides the advice
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", stopped)
    monkeypatch.setattr(Trainer, "stopped_at", lambda self: "in its first epoch")


def _advice(err: str) -> set[str]:
    return set(FLAG.findall(_one_line(err)))


def _flags(parser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def test_ctrl_c_in_compare_methods_advises_a_rerun_not_a_missing_flag(tmp_path, monkeypatch, capsys):
    _interrupt_training(monkeypatch, with_last=True)
    assert compare_cli.main(["--methods", "baseline", "--out", str(tmp_path / "cmp"), *TINY_FLAGS]) == 130
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"interrupted: training in {tmp_path / 'cmp' / 'baseline' / 's0'}") and RERUN in line
    assert "--resume" not in line


def test_every_advice_names_a_flag_its_command_has(tmp_path, monkeypatch, capsys):
    """What train, compare_methods, reproduce and noise_sweep advise on Ctrl-C and on a used --out, checked against
    their own parsers; then every --flag any wxy_hw message mentions exists in some command."""
    parsers = {m.__name__.rsplit(".", 1)[1]: m.build_parser() for m in (train_cli, compare_cli, reproduce_cli,
                                                                       noise_sweep_cli)}
    advice: dict[str, set[str]] = {name: set() for name in parsers}
    monkeypatch.chdir(tmp_path)  # cached default models land in tmp_path/runs/cache
    for with_last in (True, False):
        _interrupt_training(monkeypatch, with_last=with_last)
        out = tmp_path / f"train{with_last}"
        assert train_cli.main(["--method", "baseline", "--out", str(out), *TINY_FLAGS]) == 130
        advice["train"] |= _advice(capsys.readouterr().err)
        cmp = tmp_path / f"cmp{with_last}"
        assert compare_cli.main(["--methods", "baseline", "--out", str(cmp), *TINY_FLAGS]) == 130
        advice["compare_methods"] |= _advice(capsys.readouterr().err)
    assert advice["train"] == {"--resume", "--overwrite"}  # both branches seen
    sweep = ["--device", "reram", "--methods", "baseline", "--dataset", "synthetic", "--seeds", "0", "--train-epochs", "1",
             "--train-subset", "64", "--chips", "1", "--samples", "16", "--torch-device", "cpu", "--quiet"]
    assert noise_sweep_cli.main([*sweep, "--out", str(tmp_path / "sweep")]) == 130  # Ctrl-C in a cached model
    advice["noise_sweep"] |= _advice(capsys.readouterr().err)
    used = tmp_path / "used"
    used.mkdir()
    (used / "manifest.json").write_text(json.dumps({"tool": "wxy_hw", "kind": "noise_sweep", "status": "complete"}))
    assert noise_sweep_cli.main([*sweep, "--out", str(used)]) == 2
    advice["noise_sweep"] |= _advice(capsys.readouterr().err)
    steps = FakeSteps()
    steps.ending["compare_methods"] = KeyboardInterrupt("x; continue with the same command plus --resume")
    monkeypatch.setattr(reproduce_mod, "RUNNERS", steps.runners())
    assert _reproduce(tmp_path / "rep") == 130
    advice["reproduce"] |= _advice(capsys.readouterr().err.split("\n", 1)[1])  # after the step's passed-on line
    for name, flags in advice.items():
        assert flags <= _flags(parsers[name]), (name, flags - _flags(parsers[name]))
    assert "--overwrite" in advice["noise_sweep"]

    every = set().union(*(_flags(p) for p in parsers.values()))
    for module in ("calibrator_adapt", "chip_study", "codesign", "corruption_robustness", "early_exit_energy",
                   "quant_sweep"):
        every |= _flags(__import__(f"wxy_hw.cli.{module}", fromlist=["build_parser"]).build_parser())
    every |= _flags(script("scripts/train_zoo.py").build_parser())  # named in reproduce's messages
    outside = {"--head", "--nproc-per-node"}  # `ray start --head` and torchrun's, named in messages about them
    unknown = {(str(path.relative_to(Path(wxy_hw.__file__).parent)), flag) for path, text in _messages()
               for flag in FLAG.findall(text) if flag not in every | outside}
    assert unknown == set(), unknown


def _messages() -> list[tuple[Path, str]]:
    """Every sentence (a string constant with a space; f-string parts included) of the wxy_hw sources, docstrings
    left out: messages and help texts, not the single-word arguments of a subprocess."""
    found = []
    for path in sorted(Path(wxy_hw.__file__).parent.rglob("*.py")):
        tree = ast.parse(path.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and n.body
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        found += [(path, n.value) for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and isinstance(n.value, str) and " " in n.value.strip()
                  and id(n) not in docs]
    return found
