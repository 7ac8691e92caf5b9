"""Run directories that cannot destroy, and endings that leave a true record (issue 27, items 1, 2 and 6).

Each test builds the hostile input itself: a symlinked lock, a foreign manifest.json, a checkpoint
inside --out, a signal to a running command, a full disk, a dead holder's lock.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from wxy_hw import utils
from wxy_hw.distributed import DistInfo, LostRankError, explain_lost_rank
from wxy_hw.parallel import check_reachable
from wxy_hw.run_dir import (ARCHIVE_MARK, LOCK_NAME, OutputDirError, RunDirectory, Terminated, archive_of, claim_run_dir,
                            exit_status, in_use, read_marker, release_run_dir, run_dir_guard, set_aside_run)
from wxy_hw.studies.train import train_run
from wxy_hw.train import fit
from wxy_hw.utils import NoSpaceError, atomic_torch_save, atomic_write_text, set_aside

from helpers import ROOT, TINY, TINY_FLAGS, cli, script, snapshot


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished one-epoch training run on synthetic data (copy it before changing anything in it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train_run(out=out, epochs=1, **TINY)
    return out


def copy_run(finished: Path, where: Path) -> Path:
    shutil.copytree(finished, where, symlinks=True)
    return where


def overwrite_with_a_new_run(out: Path, kind: str) -> None:
    """What --overwrite does: claim ``out``, then open (which clears the previous run's outputs) and finish a run."""
    claim_run_dir(out, overwrite=True)
    try:
        RunDirectory(out, {"seed": 0}, kind=kind).finish()
    finally:
        release_run_dir(out)


# --- 1. run directories that cannot destroy ------------------------------------------------------------------
def test_make_clean_never_removes_a_run_in_use_and_without_a_terminal_removes_nothing(tmp_path, capsys):
    clean = script("scripts/clean_runs.py")
    runs = tmp_path / "runs"
    for name in ("old_sweep", "zoo_train/reproduce/kd/s0", "cache/model"):
        (runs / name).mkdir(parents=True)
    (runs / "old_sweep" / "table.md").write_text("x")
    (runs / "cache" / "model" / "best.pt").write_text("x")
    live = runs / "zoo_train" / "reproduce" / "kd" / "s0"
    claim_run_dir(live)  # a training another process is running
    try:
        (live / "last.pt").write_text("hours of training")
        everything = snapshot(runs)
        assert clean.main(["--runs", str(runs)]) == 0  # no terminal under pytest: nothing removed, and said
        out = capsys.readouterr().out
        assert snapshot(runs) == everything and "no terminal to ask on: kept" in out
        assert "runs/zoo_train" in out and "in use by pid" in out
        assert clean.main(["--runs", str(runs), "--yes"]) == 0
        assert sorted(p.name for p in runs.iterdir()) == ["zoo_train"]  # the live run's folder, whole
        assert (live / "last.pt").read_text() == "hours of training"
    finally:
        release_run_dir(live)


def test_setting_aside_never_moves_a_live_run_nor_clobbers_an_earlier_one(tmp_path):
    """A run set aside (damaged, stale) is moved only when no process writes in it or in a run inside it; the
    aside name never replaces anything already there, a dangling link included."""
    outer, inner = tmp_path / "comparison", tmp_path / "comparison" / "kd" / "s0"
    inner.mkdir(parents=True)
    claim_run_dir(inner)  # a training another process is running inside the folder
    try:
        (inner / "last.pt").write_bytes(b"hours of training")
        assert "pid " in in_use(outer) and str(inner) in in_use(outer)
        kept = snapshot(outer)
        with pytest.raises(OutputDirError, match="is being written by pid .* not moved aside"):
            set_aside_run(outer, "stale")
        assert snapshot(outer) == kept and not (tmp_path / "comparison.stale").exists()
    finally:
        release_run_dir(inner)
    assert in_use(outer) is None
    (tmp_path / "comparison.stale").symlink_to(tmp_path / "nowhere")  # a dangling link holds the first name
    (tmp_path / "comparison.stale2").mkdir()
    (tmp_path / "comparison.stale2" / "notes.txt").write_text("kept")
    aside = set_aside_run(outer, "stale")
    assert aside.name == "comparison.stale3" and (aside / "kd" / "s0" / "last.pt").read_bytes() == b"hours of training"
    assert not (aside / LOCK_NAME).exists() and (tmp_path / "comparison.stale2" / "notes.txt").read_text() == "kept"
    for name, text in (("f.txt", "new"), ("f.txt.damaged", "old")):
        (tmp_path / name).write_text(text)
    assert set_aside(tmp_path / "f.txt").name == "f.txt.damaged2"
    assert (tmp_path / "f.txt.damaged").read_text() == "old" and not (tmp_path / "f.txt").exists()


def test_a_symlinked_lock_is_refused_and_its_target_untouched(tmp_path, capsys):
    precious = tmp_path / "precious.txt"
    precious.write_text("years of notes\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(precious)
    assert cli("train")([*TINY_FLAGS, "--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "symbolic link" in err and len(err.strip().splitlines()) == 1
    assert precious.read_text() == "years of notes\n"
    with pytest.raises(OutputDirError, match="symbolic link"):
        claim_run_dir(out, resume=True)
    assert precious.read_text() == "years of notes\n"


def test_a_fifo_planted_as_the_lock_is_refused_without_hanging(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / LOCK_NAME)
    with pytest.raises(OutputDirError, match="not a regular file"):
        claim_run_dir(out)


def test_overwrite_never_empties_a_folder_with_someone_elses_manifest(tmp_path, capsys):
    project = tmp_path / "extension"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.js").write_text("console.log(1)\n")
    (project / "README.md").write_text("# my extension\n")
    (project / "manifest.json").write_text(json.dumps({"manifest_version": 3, "name": "ext", "status": "ok"}))
    before = snapshot(project)
    assert cli("train")([*TINY_FLAGS, "--epochs", "1", "--out", str(project), "--overwrite"]) == 2
    assert "not a wxy_hw run directory" in capsys.readouterr().err
    assert snapshot(project) == before


def test_refusal_names_the_run_it_found(finished, capsys):
    assert cli("train")([*TINY_FLAGS, "--epochs", "1", "--out", str(finished)]) == 2
    err = capsys.readouterr().err
    assert "already holds a train run (status complete, started 20" in err and "?" not in err


def test_an_archived_run_and_folders_inside_it_are_never_an_out(finished, tmp_path, capsys):
    # results/<name>/ as scripts/archive_run.py leaves it: a finished run's manifest and small files, commit.txt
    archive = copy_run(finished, tmp_path / "results" / "train_small")
    for name in ("best.pt", "last.pt"):
        (archive / name).unlink(missing_ok=True)
    (archive / ARCHIVE_MARK).write_text("run: abc123\narchived at: abc123\n")
    (archive / "methods").mkdir()
    before = snapshot(tmp_path / "results")
    for out, flags in ((archive, ["--resume"]), (archive, ["--overwrite"]), (archive / "methods" / "s0", [])):
        assert cli("train")([*TINY_FLAGS, "--epochs", "1", "--out", str(out), *flags]) == 2
        err = capsys.readouterr().err
        assert "an archived run" in err and err.count("\n") == 1
    assert snapshot(tmp_path / "results") == before
    # a folder merely holding a file called commit.txt (no manifest, no "run:" line) is not an archive
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / ARCHIVE_MARK).write_text("my notes\n")
    assert archive_of(tmp_path / "mine" / "run") is None and archive_of(archive / "methods") == archive


def test_decide_from_an_archived_pilot_runs_in_runs_not_in_the_archive(tmp_path, monkeypatch):
    from wxy_hw.cli import reproduce

    archive = tmp_path / "results" / "pilot"
    archive.mkdir(parents=True)
    (archive / "manifest.json").write_text(json.dumps({"tool": "wxy_hw", "kind": "reproduce", "status": "complete"}))
    (archive / ARCHIVE_MARK).write_text("run: abc\narchived at: abc\n")
    seen = {}

    class Fake:
        def __init__(self, budget, out, **kw):
            seen["out"] = out
            self.claims = []

        def run(self):
            raise KeyboardInterrupt  # stop before anything is written

    monkeypatch.setattr(reproduce, "decide_budget", lambda *a: reproduce.BUDGETS["table1"])
    monkeypatch.setattr(reproduce, "Reproduction", Fake)
    monkeypatch.chdir(tmp_path)
    before = snapshot(archive)
    reproduce.main(["--budget", "decide", "--pilot", str(archive), "--quiet"])
    assert seen["out"] == Path("runs") / "reproduce" / "decide" and snapshot(archive) == before


def test_overwrite_refuses_an_out_holding_the_commands_own_checkpoint(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "run")
    before = snapshot(run)
    rc = cli("noise_sweep")(["--checkpoints", str(run / "best.pt"), "--out", str(run), "--overwrite",
                             "--device", "reram", "--chips", "1", "--samples", "16", "--no-flat", "--quiet",
                             "--dataset", "synthetic", "--torch-device", "cpu"])
    assert rc == 2
    assert "own input" in capsys.readouterr().err
    assert snapshot(run) == before


def test_overwrite_removes_only_what_the_previous_run_recorded(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "run")
    recorded = set(json.loads((run / "manifest.json").read_text())["outputs"])
    assert {"best.pt", "last.pt", "manifest.json", "config.toml", "results.json"} <= recorded
    (run / "my_notes.txt").write_text("added by hand after the run\n")
    assert cli("train")([*TINY_FLAGS, "--epochs", "1", "--out", str(run), "--overwrite"]) == 2
    assert "my_notes.txt" in capsys.readouterr().err
    assert (run / "my_notes.txt").exists() and (run / "best.pt").exists()
    (run / "my_notes.txt").unlink()
    assert cli("train")([*TINY_FLAGS, "--epochs", "1", "--out", str(run), "--overwrite"]) == 0
    assert json.loads((run / "manifest.json").read_text())["status"] == "complete"


def test_overwrite_after_a_killed_run_clears_what_it_wrote(tmp_path):
    out = tmp_path / "run"
    run = RunDirectory(out, {"seed": 0}, kind="train")
    atomic_torch_save({"epoch": 0}, out / "last.pt")  # recorded in the manifest as it is written
    run._close()  # as SIGKILL leaves it: lock free, the manifest still "running"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "running" and "last.pt" in manifest["outputs"]
    (out / "notes.txt").write_text("added by hand after the crash\n")
    with pytest.raises(OutputDirError, match="also notes.txt, which that run did not write"):
        claim_run_dir(out, overwrite=True)
    assert (out / "notes.txt").exists() and (out / "last.pt").exists()
    (out / "notes.txt").unlink()
    claim_run_dir(out, overwrite=True)
    try:
        assert (out / "last.pt").exists()  # nothing is removed before the new run starts
        RunDirectory(out, {"seed": 0}, kind="train").finish()
    finally:
        release_run_dir(out)
    assert not (out / "last.pt").exists()


def test_files_a_user_drops_into_a_running_run_are_never_its_outputs(tmp_path):
    """Only what the run wrote (through atomic_write, its ``own`` names, or a worker's run folders) is its own:
    a note or folder added by hand while it runs survives --overwrite, which names it; a temporary file a killed
    write left behind is the run's and is cleared with it."""
    out = tmp_path / "run"
    run = RunDirectory(out, {"seed": 0}, kind="sweep")
    atomic_write_text(out / "table.md", "t\n")
    (out / "NOTES.txt").write_text("mine\n")
    (out / "my_analysis").mkdir()
    (out / "my_analysis" / "plot_data.csv").write_text("1\n")
    (out / "kd" / "s0").mkdir(parents=True)  # a Ray worker's training: written by another process, unseen here
    (out / "kd" / "s0" / "manifest.json").write_text(json.dumps({"tool": "wxy_hw", "kind": "train", "status": "complete"}))
    (out / "study.db").write_bytes(b"sqlite")
    run.own("study.db")
    (out / ".table.md.abcd_123.tmp").write_text("half")  # a write killed before its rename
    run.finish()
    outputs = json.loads((out / "manifest.json").read_text())["outputs"]
    assert outputs == ["kd", "manifest.json", "study.db", "table.md"]
    with pytest.raises(OutputDirError, match="also NOTES.txt, my_analysis, which that run did not write"):
        claim_run_dir(out, overwrite=True)
    shutil.move(out / "NOTES.txt", tmp_path / "NOTES.txt")
    shutil.move(out / "my_analysis", tmp_path / "my_analysis")
    overwrite_with_a_new_run(out, "sweep")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_a_file_dropped_inside_a_runs_folders_is_never_removed_with_them(tmp_path):
    """--overwrite removes a run's folders whole, so a note a user put inside one (or inside a worker's run folder
    in it) makes it refuse, naming the note, before anything is touched; the files a run wrote below its top level
    are recorded by the innermost run that wrote them."""
    out = tmp_path / "run"
    run = RunDirectory(out, {"seed": 0}, kind="sweep")
    atomic_write_text(out / "methods" / "comparison.csv", "a\n")
    (out / "methods" / ".comparison.csv.abcd_123.tmp").write_text("half")  # a write killed before its rename
    inner = RunDirectory(out / "methods" / "kd", {"seed": 0}, kind="train")
    atomic_write_text(out / "methods" / "kd" / "curves" / "loss.csv", "1\n")
    inner.finish()
    run.finish()
    assert json.loads((out / "manifest.json").read_text())["files"] == ["methods/comparison.csv"]
    assert json.loads((out / "methods" / "kd" / "manifest.json").read_text())["files"] == ["curves/loss.csv"]
    (out / "methods" / "my_notes.txt").write_text("mine\n")
    (out / "methods" / "kd" / "curves" / "mine.png").write_bytes(b"png")
    before = snapshot(out)
    with pytest.raises(OutputDirError, match="inside its folders, also methods/kd/curves/mine.png, "
                                             "methods/my_notes.txt, which that run did not write"):
        claim_run_dir(out, overwrite=True)
    assert snapshot(out) == before
    (out / "methods" / "my_notes.txt").unlink()
    (out / "methods" / "kd" / "curves" / "mine.png").unlink()
    overwrite_with_a_new_run(out, "sweep")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_a_steps_own_run_folder_and_what_its_reproduction_wrote_into_it_are_never_foreign(tmp_path):
    """A reproduction's step is a run of its own in a top-level folder: judged by its manifest, plus what the
    reproduction itself wrote into it after the step ended; a note beside them is still named."""
    out = tmp_path / "repro"
    run = RunDirectory(out, {"seed": 0}, kind="reproduce")
    step = RunDirectory(out / "early_exit", {"seed": 0}, kind="early_exit_energy")
    atomic_write_text(out / "early_exit" / "per_exit.csv", "1\n")
    step.finish()
    atomic_write_text(out / "early_exit" / "figures" / "summary.csv", "2\n")  # the reproduction's, after the step
    atomic_write_text(out / "report.md", "r\n")
    run.finish()
    claim_run_dir(out, overwrite=True)  # nothing foreign: no refusal
    release_run_dir(out)
    (out / "early_exit" / "figures" / "mine.txt").write_text("mine\n")
    with pytest.raises(OutputDirError, match="inside its folders, also early_exit/figures/mine.txt, which"):
        claim_run_dir(out, overwrite=True)
    (out / "early_exit" / "figures" / "mine.txt").unlink()
    overwrite_with_a_new_run(out, "reproduce")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_a_run_recorded_before_files_were_keeps_its_folders_whole_and_so_does_its_resume(tmp_path):
    """A manifest without ``files`` (an earlier wxy_hw) cannot say what its folders hold: --overwrite takes them
    whole, as that version did, and a run resuming it does not start a partial record."""
    out = tmp_path / "run"
    run = RunDirectory(out, {"seed": 0}, kind="train")
    atomic_write_text(out / "curves" / "loss.csv", "1\n")
    run._close()  # killed
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["files"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "curves" / "anything.txt").write_text("?\n")
    claim_run_dir(out, resume=True, kind="train")
    try:
        resumed = RunDirectory(out, {"seed": 0}, kind="train")
        atomic_write_text(out / "curves" / "acc.csv", "2\n")
        resumed.finish()
    finally:
        release_run_dir(out)
    assert "files" not in json.loads((out / "manifest.json").read_text())
    overwrite_with_a_new_run(out, "train")
    assert not (out / "curves").exists()


def test_fit_refuses_an_out_holding_a_finished_training_run(finished, tmp_path):
    run = copy_run(finished, tmp_path / "run")
    before = snapshot(run)
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 2
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    net(x)
    with pytest.raises(OutputDirError, match="already holds a train run"):
        fit(net, "baseline", [(x, y)], [(x, y)], epochs=1, out=run, torch_device="cpu", progress=False)
    assert snapshot(run) == before
    out = tmp_path / "fit"
    fit(net, "baseline", [(x, y)], [(x, y)], epochs=1, out=out, torch_device="cpu", progress=False)
    assert read_marker(out)["kind"] == "fit" and read_marker(out)["status"] == "complete"
    with pytest.raises(OutputDirError, match="already holds a fit run"):
        fit(net, "baseline", [(x, y)], [(x, y)], epochs=1, out=out, torch_device="cpu", progress=False)
    fit(net, "baseline", [(x, y)], [(x, y)], epochs=1, out=out, overwrite=True, torch_device="cpu", progress=False)


def test_compare_methods_refuses_an_unrelated_folder_and_keeps_its_config(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.toml").write_text("[tool.mine]\nanswer = 42\n")
    before = snapshot(folder)
    rc = cli("compare_methods")([*TINY_FLAGS, "--methods", "baseline", "--epochs", "1", "--out", str(folder)])
    assert rc == 2 and "not a wxy_hw run directory" in capsys.readouterr().err
    assert snapshot(folder) == before


def test_the_lock_records_host_pid_and_start_and_a_stale_one_is_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    claim_run_dir(out)
    info = json.loads((out / LOCK_NAME).read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname() and info["started"]
    release_run_dir(out)
    assert not (out / LOCK_NAME).exists()
    # a lock left by a process that died (nobody holds its flock)
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"tool": "wxy_hw", "host": "h", "pid": 999999, "started": "then"}))
    claim_run_dir(out)
    assert "taking over the lock of pid 999999" in capsys.readouterr().err
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    release_run_dir(out)


# --- 2. every ending leaves a true record ----------------------------------------------------------------------
def _wait_for(predicate, timeout: float = 120.0) -> None:
    t0 = time.time()
    while not predicate():
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.slow
def test_sigterm_and_sighup_end_like_ctrl_c(tmp_path, sig):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    flags = [f for f in TINY_FLAGS if f not in ("--max-steps", "1")]
    proc = subprocess.Popen([sys.executable, "experiments/train.py", *flags, "--epochs", "500", "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a suite started under nohup passes SIGHUP on ignored; a terminal user's run sees it
                            preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
    try:
        _wait_for(lambda: (out / "last.pt").exists() or proc.poll() is not None)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("interrupted:"), err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and signal.Signals(sig).name in manifest["reason"]
    assert not (out / LOCK_NAME).exists()


def test_a_signal_inside_a_guarded_block_marks_the_manifest_and_gives_128_plus_the_signal(tmp_path):
    out = tmp_path / "run"
    # a suite started under nohup inherits SIGHUP ignored, which the guard rightly keeps: a terminal user's is not
    old = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        with pytest.raises(Terminated) as caught:
            with run_dir_guard(out):
                RunDirectory(out, {"seed": 0}, kind="test")
                os.kill(os.getpid(), signal.SIGHUP)
                time.sleep(5)  # the handler raises before this ends
    finally:
        signal.signal(signal.SIGHUP, old)
    assert exit_status(caught.value) == 128 + signal.SIGHUP
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    assert signal.getsignal(signal.SIGHUP) is not None and not (out / LOCK_NAME).exists()


def test_a_signal_ignored_at_start_stays_ignored(tmp_path):
    """`nohup wxy-hw ... &`: SIGHUP was ignored when the command started, so closing the terminal must not stop it."""
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with run_dir_guard(tmp_path / "run"):
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) != signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)


def test_an_unreachable_ray_address_fails_fast_with_one_line():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.time()
    with pytest.raises(ValueError, match=f"127.0.0.1:{port}: no Ray head answers"):
        check_reachable(f"127.0.0.1:{port}")
    assert time.time() - t0 < 30
    with pytest.raises(ValueError, match="HOST:PORT"):
        check_reachable("nonsense")


class _FullDisk:
    """A file object whose writes fail as a full disk's do."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


@pytest.mark.parametrize("writer", ["text", "torch"])
def test_a_full_disk_says_no_space_left_and_leaves_the_old_file(tmp_path, monkeypatch, writer):
    target = tmp_path / ("a.json" if writer == "text" else "a.pt")
    atomic_write_text(target, "old\n")
    real_fdopen = os.fdopen
    monkeypatch.setattr(utils.os, "fdopen", lambda fd, mode: _FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(NoSpaceError, match=f"no space left on the disk holding {target}"):
        if writer == "text":
            atomic_write_text(target, "new\n")
        else:
            atomic_torch_save({"w": torch.zeros(1000)}, target)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporary file left


def test_a_full_disk_during_a_study_is_one_line_and_the_run_still_ends(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    calls = {"n": 0}
    real = utils.atomic_write

    def full_after_first(path, write):
        calls["n"] += 1
        if calls["n"] > 1:
            raise NoSpaceError(errno.ENOSPC, f"no space left on the disk holding {path}")
        return real(path, write)

    monkeypatch.setattr("wxy_hw.run_dir.atomic_write_text", lambda p, t: full_after_first(p, lambda h: h.write(t.encode())))
    with pytest.raises(NoSpaceError):
        with run_dir_guard(out):
            RunDirectory(out, {"seed": 0}, kind="test")
            raise NoSpaceError(errno.ENOSPC, "no space left on the disk holding x")
    assert "could not record the end of the run" in capsys.readouterr().err
    assert not (out / LOCK_NAME).exists()


def test_a_lost_torchrun_rank_is_one_line_naming_the_ranks():
    gloo = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer "
                        "[127.0.0.1]:29500\nException raised from ...")
    err = explain_lost_rank(gloo, DistInfo(rank=0, world=2, local_rank=0), "in epoch 3")
    assert isinstance(err, LostRankError)
    assert str(err).startswith("torchrun rank 0 of 2 lost rank 1 in epoch 3") and "\n" not in str(err)
    other = RuntimeError("shape mismatch")
    assert explain_lost_rank(other, DistInfo(0, 2, 0), "x") is other


# --- 6. outputs follow the umask -------------------------------------------------------------------------------
@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        text = atomic_write_text(tmp_path / "a.csv", "x\n")
        ckpt = atomic_torch_save({"w": torch.zeros(2)}, tmp_path / "a.pt")
    finally:
        os.umask(old)
    for path in (text, ckpt):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_overwrite_replaces_only_a_run_of_the_same_study(tmp_path, finished, capsys):
    """noise_sweep --overwrite never clears a compare_methods folder (trainings, hand-added notes and all)."""
    folder = tmp_path / "comparison"
    (folder / "baseline" / "s0").mkdir(parents=True)
    (folder / "baseline" / "s0" / "best.pt").write_bytes(b"hours of training")
    (folder / "manifest.json").write_text(json.dumps({"tool": "wxy_hw", "kind": "compare_methods",
                                                      "status": "complete", "outputs": ["baseline", "manifest.json"]}))
    before = snapshot(folder)
    rc = cli("noise_sweep")(["--checkpoints", str(finished / "best.pt"), "--out", str(folder), "--overwrite",
                             "--chips", "1", "--samples", "16", "--no-flat", "--quiet", "--dataset", "synthetic",
                             "--torch-device", "cpu"])
    assert rc == 2 and "not a noise_sweep run" in capsys.readouterr().err
    assert snapshot(folder) == before


def test_a_manifest_that_recorded_no_outputs_is_never_overwritten(tmp_path):
    """A run of an earlier wxy_hw (or a hand-made look-alike) lists no outputs: --overwrite cannot tell them apart."""
    run = tmp_path / "old"
    (run / "src").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"kind": "train", "status": "complete", "versions": {"wxy_hw": "0"}}))
    before = snapshot(run)
    with pytest.raises(OutputDirError, match="did not record its outputs"):
        claim_run_dir(run, overwrite=True)
    assert snapshot(run) == before


def test_compare_methods_keeps_a_manifest_of_its_own(tmp_path):
    from wxy_hw.studies.compare_methods import compare_methods

    out = tmp_path / "cmp"
    settings = {k: v for k, v in TINY.items() if k not in ("method", "progress")}
    compare_methods(methods=["baseline"], out=out, epochs=1, progress=False, **settings)
    manifest = read_marker(out)
    assert manifest["kind"] == "compare_methods" and manifest["status"] == "complete"
    assert {"baseline", "config.toml", "comparison.csv", "comparison.md"} <= set(manifest["outputs"])
    compare_methods(methods=["baseline"], out=out, epochs=1, progress=False, **settings)  # re-run: reused
    assert read_marker(out)["status"] == "complete"


@pytest.mark.slow
def test_something_that_is_not_a_ray_head_is_refused_within_30_s(monkeypatch):
    import wxy_hw.parallel as parallel

    monkeypatch.setattr(parallel, "RAY_PROBE_TIMEOUT_S", 3.0)
    with socket.socket() as server:  # listens, accepts, never speaks Ray
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        t0 = time.time()
        with pytest.raises(ValueError, match=f"127.0.0.1:{port}: (something listens there but no Ray head|Ray could "
                                             "not join)"):
            check_reachable(f"127.0.0.1:{port}")
    assert time.time() - t0 < 30


def test_a_signal_inside_a_writer_whose_cleanup_fails_is_still_the_signal(tmp_path):
    """A signal landing inside torch.save makes its zip writer's cleanup raise RuntimeError ("unexpected pos") while
    handling it: atomic_write reports the signal (so the command exits 128 + signal), never the writer's error,
    and leaves neither the file nor a temporary one."""
    from wxy_hw.utils import atomic_write

    def writer(handle):
        try:
            handle.write(b"half")
            raise Terminated(signal.SIGHUP)  # what the handler raises mid-write
        finally:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 864064 vs 863952")

    with pytest.raises(Terminated) as caught:
        atomic_write(tmp_path / "last.pt", writer)
    assert exit_status(caught.value) == 128 + signal.SIGHUP
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="unexpected pos"):  # an error with no interrupt behind it stays itself
        atomic_write(tmp_path / "x", lambda handle: (_ for _ in ()).throw(RuntimeError("unexpected pos")))


def test_a_lock_that_cannot_be_read_counts_as_held_and_a_resumed_run_keeps_its_workers_folders(tmp_path):
    bad = tmp_path / "runs" / "odd"
    bad.mkdir(parents=True)
    (bad / LOCK_NAME).symlink_to(tmp_path / "elsewhere")
    assert "cannot be read" in in_use(tmp_path / "runs")  # make clean keeps it, without a traceback
    out = tmp_path / "comparison"
    RunDirectory(out, {"seed": 0}, kind="compare")._close()  # killed before it ended
    (out / "kd" / "s0").mkdir(parents=True)  # what a Ray worker had written by then
    (out / "kd" / "s0" / "manifest.json").write_text(json.dumps({"tool": "wxy_hw", "kind": "train", "status": "x"}))
    claim_run_dir(out, resume=True)
    try:
        run = RunDirectory(out, {"seed": 0}, kind="compare")
        (out / "kd" / "s0" / "grad_norms.csv").write_text("damaged")
        aside = set_aside(out / "kd" / "s0" / "grad_norms.csv")  # kept inside the run: still the run's
        run.finish()
    finally:
        release_run_dir(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert "kd" in manifest["outputs"] and "kd" not in manifest["preexisting"] and aside.exists()
    (out / "notes.md").write_text("mine")
    set_aside(out / "notes.md")  # outside any open run: nobody's output
    assert "notes.md.damaged" not in json.loads((out / "manifest.json").read_text())["outputs"]
