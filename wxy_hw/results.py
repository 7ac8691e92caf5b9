"""Run directories, manifests and the seed-style result tables."""
from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Sequence

from .output import format_table  # noqa: F401  (re-exported: results tables)
from .utils import atomic_write_text

TRACKED_PACKAGES = ("torch", "numpy", "scipy", "aihwkit", "brevitas", "scikit-learn", "mlxtend", "wxy_hw")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape results."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(repo: Path | None = None) -> dict[str, Any]:
    """HEAD commit and whether the work tree had uncommitted changes (None outside git)."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        return {"commit": head, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


LOCK_NAME = ".lock"


class OutputDirError(ValueError):
    """A run directory (--out) cannot be used: a file, used by a finished run, or in use by another process."""


@dataclass
class _Claim:
    fd: int
    refs: int
    created: bool        # this process made the directory (removed again if nothing was written)
    clear_pending: bool  # --overwrite: previous outputs are cleared when the new run writes its first file
    opened: bool = False  # a RunDirectory was started under this claim (a second one would mix two runs)


_CLAIMS: dict[Path, _Claim] = {}
_ACTIVE: list["RunDirectory"] = []


def _key(path: str | Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))


def _entries(path: Path) -> list[str]:
    return sorted(e.name for e in path.iterdir() if e.name != LOCK_NAME)


def _holder(lock: Path) -> str | None:
    """The pid holding ``lock`` (as text), or None when no live process holds it."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.read(fd, 64).decode(errors="replace").strip() or "?"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _refuse_used(path: Path, entries: list[str], overwrite: bool) -> None:
    """Refuse a directory that already holds outputs, unless --overwrite and it is a run directory."""
    manifest = path / "manifest.json"
    if not manifest.is_file():
        shown = ", ".join(entries[:4]) + (" ..." if len(entries) > 4 else "")
        raise OutputDirError(f"--out {path} is not empty ({shown}) and holds no manifest.json, so it is not a wxy_hw "
                             "run directory; --overwrite only replaces run directories: choose a new or empty --out")
    if overwrite:
        return
    try:
        old = json.loads(manifest.read_text())
        what = f"a {old.get('kind', '?')} run (status {old.get('status', '?')})"
    except (OSError, ValueError):
        old, what = {}, "a run"
    resumable = (path / "last.pt").is_file() and old.get("status") != "complete"
    hint = " or --resume to continue it" if resumable else ""
    raise OutputDirError(f"--out {path} already holds {what}; pass --overwrite to replace it{hint}, "
                         "or choose another --out")


def claim_run_dir(path: str | Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Reserve ``path`` as this process's run directory before any work starts.

    Refuses, with one line each: a path that is a file or lies under one; a directory another
    process is writing (an flock on ``<path>/.lock``, released even if that process is killed);
    a directory that already holds outputs, unless ``overwrite`` (the previous outputs are then
    cleared when the new run writes its manifest) or ``resume`` (continue in place). Claims are
    reentrant within a process; each must be paired with ``release_run_dir``.
    """
    key = _key(path)
    if key in _CLAIMS:
        _CLAIMS[key].refs += 1
        return key
    for parent in [key, *key.parents]:
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == key else f"lies under {parent}, which is a file"
            raise OutputDirError(f"--out {path} {where}; give a directory path for the run")
    if key.is_dir():
        holder = _holder(key / LOCK_NAME)
        if holder is not None:
            raise OutputDirError(f"--out {path} is being written by another running process (pid {holder}); "
                                 "wait for it to finish or choose another --out")
        entries = _entries(key)
        if entries and not resume:
            _refuse_used(key, entries, overwrite)  # before touching anything: a refused directory stays byte-identical
    created = not key.exists()
    try:
        key.mkdir(parents=True, exist_ok=True)
        fd = os.open(key / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputDirError(f"--out {path}: cannot create the run directory ({exc.strerror}); "
                             "choose a writable --out") from exc
    for attempt in range(5):  # a few tries: another process's look at the lock (_holder) holds it for microseconds
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt == 4:
                os.close(fd)
                raise OutputDirError(f"--out {path} is being written by another running process; "
                                     "wait for it to finish or choose another --out") from None
            time.sleep(0.02)
    # The previous holder unlinks the lock file as it releases it: if it did so between our open and our
    # flock, we hold a vanished inode. Start again: the directory is free, or used by the run that just ended.
    try:
        same = os.fstat(fd).st_ino == os.stat(key / LOCK_NAME).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return claim_run_dir(path, overwrite=overwrite, resume=resume)
    entries = _entries(key)  # again under the lock: the directory may have changed since the first look
    if entries and not resume:
        try:
            _refuse_used(key, entries, overwrite)
        except OutputDirError:
            os.close(fd)
            raise
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _CLAIMS[key] = _Claim(fd, 1, created, clear_pending=bool(entries) and overwrite and not resume)
    return key


def release_run_dir(path: str | Path) -> None:
    """Drop one claim on ``path``; the last one unlocks it (and removes it if this process made it and left it empty)."""
    key = _key(path)
    claim = _CLAIMS.get(key)
    if claim is None:
        return
    claim.refs -= 1
    if claim.refs > 0:
        return
    del _CLAIMS[key]
    try:
        os.unlink(key / LOCK_NAME)
    except OSError:
        pass
    os.close(claim.fd)  # unlock after unlinking, so a waiting process never locks a file about to vanish
    if claim.created:
        try:
            key.rmdir()  # only succeeds when nothing was written
        except OSError:
            pass


def _clear_previous(key: Path) -> None:
    """--overwrite: remove the previous run's outputs, the manifest last, so an interrupted clear stays recognisable."""
    manifest = key / "manifest.json"
    try:
        old = json.loads(manifest.read_text())
        old["status"] = "being overwritten"
        atomic_write_text(manifest, json.dumps(old, indent=2, default=str) + "\n")
    except (OSError, ValueError):
        pass
    for name in _entries(key):
        if name == "manifest.json":
            continue
        entry = key / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    manifest.unlink(missing_ok=True)


@contextmanager
def run_dir_guard(path: str | Path | None, *, overwrite: bool = False, resume: bool = False) -> Iterator[None]:
    """Claim ``path`` (when given) for a whole command; a failure or Ctrl-C marks every open run's manifest."""
    if path is not None:
        claim_run_dir(path, overwrite=overwrite, resume=resume)
    try:
        yield
    except BaseException as exc:
        for run in list(_ACTIVE):
            run.abort(exc)
        raise
    finally:
        if path is not None:
            release_run_dir(path)


class RunDirectory:
    """A results directory with a manifest written at start and completed (or marked failed) at the end."""

    def __init__(self, path: str | Path, config: dict[str, Any], *, kind: str) -> None:
        self.path = Path(path)
        key = claim_run_dir(self.path)
        claim = _CLAIMS[key]
        if claim.opened:  # e.g. a library call re-using the directory of an earlier run that failed in this process
            release_run_dir(key)
            raise OutputDirError(f"--out {path} already holds a run started earlier in this process; "
                                 "choose another --out")
        claim.opened = True
        if claim.clear_pending:
            _clear_previous(key)
            claim.clear_pending = False
        self.t0 = time.time()
        self.manifest: dict[str, Any] = {
            "kind": kind,
            "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
            "config": config,
            "seed": config.get("seed"),
            "versions": package_versions(),
            "git": git_commit(),
            "host": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "status": "running",
        }
        self.write_manifest()
        _ACTIVE.append(self)

    def write_manifest(self) -> Path:
        """(Re)write manifest.json atomically."""
        return atomic_write_text(self.path / "manifest.json", json.dumps(self.manifest, indent=2, default=str) + "\n")

    def finish(self, **results: Any) -> Path:
        """Record results and wall time; mark the run complete."""
        self.manifest.update(results)
        self.manifest["wall_time_s"] = round(time.time() - self.t0, 2)
        self.manifest["status"] = "complete"
        path = self.write_manifest()
        self._close()
        return path

    def abort(self, exc: BaseException) -> None:
        """Mark the run failed (or interrupted, for Ctrl-C) with the reason, and release the directory."""
        if self not in _ACTIVE:
            return
        self.manifest["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        self.manifest["reason"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        self.manifest["wall_time_s"] = round(time.time() - self.t0, 2)
        try:
            self.write_manifest()
        finally:
            self._close()

    def _close(self) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
            release_run_dir(self.path)


def exit_columns(num_exits: int) -> list[str]:
    """Seed-style column names: Classifier 1/4 ... 4/4."""
    return [f"Classifier {i + 1}/{num_exits}" for i in range(num_exits)]


def seed_table_row(label: str, exit_accuracy: Sequence[float], ensemble: float | None,
                   baseline: float | None = None) -> dict[str, Any]:
    """One row of the seed's Table 1: Baseline | Classifier i/N ... | Ensemble."""
    row: dict[str, Any] = {"Model": label, "Baseline": baseline}
    n = len(exit_accuracy)
    if n > 1:
        row.update(zip(exit_columns(n), exit_accuracy))
        row["Ensemble"] = ensemble
    return row
