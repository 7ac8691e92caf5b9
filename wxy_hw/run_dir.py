"""Run directories that cannot destroy: the lock, the manifest, what ``--overwrite`` may remove, and signals.

A run directory is recognised by its ``manifest.json`` *content* (``"tool": "wxy_hw"``), never by a
file name alone. Every manifest lists the top-level entries the run created (``outputs``), the files it
wrote inside them (``files``) and the entries that were there before it (``preexisting``); ``--overwrite``
removes only a previous run's outputs, refuses a directory holding anything else, at any depth, or any input
of the new command, and never follows a symbolic link. The lock (``<out>/.lock``) is created with ``O_CREAT | O_EXCL | O_NOFOLLOW``, holds
host, pid and start time, and carries an ``flock`` that the kernel releases when its process dies,
so a lock left by a killed process is recognised as stale and taken over with one line.
SIGTERM and SIGHUP end a command as Ctrl-C does: the manifest says "interrupted", the lock is
released, and the exit status is 128 + the signal number.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import platform
import re
import shutil
import signal
import socket
import stat
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from .results import git_commit, package_versions
from . import utils
from .utils import atomic_write_text, few_names, set_aside

TOOL = "wxy_hw"
SCHEMA = "wxy_hw.run/1"
LOCK_NAME = ".lock"
MANIFEST = "manifest.json"
# scripts/archive_run.py copies a finished run's small files under results/<name>/ and writes this file
# ("run: <commit>\narchived at: <commit>"): the record behind a docs table, never a place to run in
ARCHIVE_MARK = "commit.txt"


class OutputDirError(ValueError):
    """A run directory (--out) cannot be used: a file, someone else's directory, or in use by another process."""


@dataclass
class _Claim:
    fd: int
    refs: int
    created: bool        # this process made the directory (removed again if nothing was written)
    before: list[str]    # entries present when claimed (after any --overwrite clear)
    previous: dict[str, Any] = field(default_factory=dict)  # the manifest found there (a resumed run's)
    clear: list[str] | None = None  # --overwrite: the previous run's outputs, cleared when the new run starts
    opened: bool = False  # a RunDirectory was started under this claim (a second one would mix two runs)


_CLAIMS: dict[Path, _Claim] = {}
_ACTIVE: list[RunDirectory] = []


def _key(path: str | Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))


def _entries(path: Path) -> list[str]:
    return sorted(e.name for e in path.iterdir() if e.name != LOCK_NAME)


# --- what a directory holds -------------------------------------------------------------------------------
def read_marker(path: str | Path) -> dict[str, Any] | None:
    """The manifest of the wxy_hw run in ``path``, or None when ``path`` holds no run that wxy_hw wrote.

    Recognised by content: ``"tool": "wxy_hw"``; a manifest written before that field existed is
    recognised by its kind, status and the ``wxy_hw`` entry of its recorded package versions. A
    symbolic link, a damaged file or any other project's ``manifest.json`` is not a marker.
    """
    manifest = Path(path) / MANIFEST
    if manifest.is_symlink() or not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if data.get("tool") == TOOL:
        return data
    legacy = isinstance(data.get("versions"), dict) and TOOL in data["versions"] and \
        isinstance(data.get("kind"), str) and isinstance(data.get("status"), str)
    return data if legacy else None


def own_outputs(manifest: dict[str, Any], entries: list[str]) -> list[str] | None:
    """The entries of a run directory that its run recorded as its own (what --overwrite may remove); None when the
    run recorded nothing (written by a wxy_hw from before runs recorded their outputs).

    A run records a top-level entry as soon as it writes a file there (every file goes through
    ``atomic_write``), so a run killed without a chance to end (SIGKILL, power loss) still lists
    what it wrote; anything else in its folder is not its own.
    """
    outputs = manifest.get("outputs")
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
        return None  # absent, or not what wxy_hw writes: nothing is known to be the run's
    recorded = set(outputs) | {MANIFEST}
    return [e for e in entries if e in recorded or ATOMIC_TEMP.fullmatch(e)]


# the temporary sibling ``atomic_write`` writes before its rename (``.<name>.<8 random>.tmp``): one a killed run left
# behind is that run's, cleared with it rather than blocking --overwrite
ATOMIC_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def _written_files(manifest: dict[str, Any]) -> set[str] | None:
    """The files (paths relative to the run's folder) a run recorded writing below its top level; None when its
    manifest predates that record (``files``), so its recorded folders are taken whole, as that wxy_hw did."""
    files = manifest.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return set(files)


def foreign_inside(path: Path, manifest: dict[str, Any], own: list[str], also: Iterable[str] = ()) -> list[str]:
    """What lies inside the run's own folders in ``path`` that the run did not write (a note a user dropped into
    ``methods/``, say), relative to ``path``: --overwrite would remove it with the folder, so it refuses instead.
    A folder holding a run of its own (a worker's training, a reproduction's step) is judged by that run's
    manifest, together with what the enclosing runs wrote into it (``also``); a file a killed write left
    half-written (``ATOMIC_TEMP``) is the run's."""
    recorded = _written_files(manifest)
    if recorded is None:
        return []
    written = recorded | set(also)
    found: list[str] = []

    def judge(child: Path, name: str) -> None:
        if name in written or ATOMIC_TEMP.fullmatch(child.name):
            return  # a file it wrote, or a whole folder it set aside
        if child.is_symlink() or not child.is_dir():
            found.append(name)
            return
        inner = read_marker(child)
        if inner is None:
            try:
                children = sorted(child.iterdir())
            except OSError:
                found.append(name + "/")  # unreadable: nothing is known to be the run's
                return
            for grandchild in children:
                judge(grandchild, f"{name}/{grandchild.name}")
            return
        entries, prefix = _entries(child), name + "/"
        inner_own = own_outputs(inner, entries)
        if inner_own is None:
            return  # a run from before outputs were recorded: its folder is taken whole, as that wxy_hw did
        ours = {w[len(prefix):] for w in written if w.startswith(prefix)}
        # a folder only the enclosing runs wrote into is theirs to vouch for, file by file, as its own are
        theirs = [e for e in entries if e not in inner_own and any(o.startswith(e + "/") for o in ours)]
        found.extend(prefix + e for e in entries if e not in inner_own and e not in ours and e not in theirs)
        found.extend(prefix + e for e in foreign_inside(child, inner, inner_own + theirs, ours))

    for entry in own:
        child = path / entry
        if entry != MANIFEST and child.is_dir() and not child.is_symlink():
            judge(child, entry)
    return found


def _holds_a_run(path: Path, depth: int = 3) -> bool:
    """Whether ``path`` is, or holds within ``depth`` levels, a folder with a wxy_hw manifest (a training that a
    worker process wrote, which this process's write hook did not see)."""
    if path.is_symlink() or not path.is_dir():
        return False
    if read_marker(path) is not None:
        return True
    try:
        children = [c for c in path.iterdir() if c.is_dir() and not c.is_symlink()]
    except OSError:
        return False
    return depth > 0 and any(_holds_a_run(c, depth - 1) for c in children)


def _describe(manifest: dict[str, Any]) -> str:
    started = f", started {manifest['started']}" if manifest.get("started") else ""
    return f"a {manifest.get('kind', 'wxy_hw')} run (status {manifest.get('status', 'unknown')}{started})"


def _inside(child: Path, parent: Path) -> bool:
    try:
        return os.path.commonpath([os.path.realpath(child), os.path.realpath(parent)]) == os.path.realpath(parent)
    except ValueError:
        return False


def _check_inputs(path: Path, inputs: Iterable[str | Path]) -> None:
    """--overwrite never clears a directory that holds one of the command's own inputs."""
    inside = [str(p) for p in inputs if p is not None and _inside(Path(p).expanduser(), path)]
    if inside:
        raise OutputDirError(f"--out {path} holds this command's own input(s) ({few_names(inside)}); --overwrite would "
                             "delete them: choose another --out")


def _refuse_used(path: Path, entries: list[str], *, overwrite: bool, resume: bool, kind: str | None,
                 inputs: Iterable[str | Path]) -> tuple[dict[str, Any], list[str] | None]:
    """Check a non-empty ``path``; returns (its run's manifest, the entries --overwrite will clear, if any)."""
    manifest = read_marker(path)
    if manifest is None:
        raise OutputDirError(f"--out {path} is not empty ({few_names(entries)}) and is not a wxy_hw run directory (no "
                             "manifest.json written by wxy_hw); wxy_hw writes only into new or empty directories or "
                             "its own runs: choose a new or empty --out")
    if overwrite:
        _check_inputs(path, inputs)  # first: the gravest thing --overwrite could do
    if kind is not None and manifest.get("kind") != kind and (resume or overwrite):
        raise OutputDirError(f"--out {path} holds {_describe(manifest)}, not a {kind} run, which this command "
                             "neither continues nor replaces: choose another --out")
    if resume:
        return manifest, None
    if not overwrite:
        hint = " or --resume to continue it" if manifest.get("kind") == "train" and \
            (path / "last.pt").is_file() and manifest.get("status") != "complete" else ""
        raise OutputDirError(f"--out {path} already holds {_describe(manifest)}; pass --overwrite to replace it"
                             f"{hint}, or choose another --out")
    own = own_outputs(manifest, entries)
    if own is None:
        raise OutputDirError(f"--out {path} holds {_describe(manifest)} written by an earlier wxy_hw that did not "
                             "record its outputs, so --overwrite cannot tell them from other files: remove the "
                             "folder yourself, or choose another --out")
    foreign = [e for e in entries if e not in own]
    if foreign:
        raise OutputDirError(f"--out {path} holds {_describe(manifest)} and also {few_names(foreign)}, which that run did "
                             "not write; --overwrite removes only a run's own outputs: move them away or choose "
                             "another --out")
    inside = foreign_inside(path, manifest, own)
    if inside:
        raise OutputDirError(f"--out {path} holds {_describe(manifest)} and, inside its folders, also "
                             f"{few_names(inside)}, which that run did not write; --overwrite removes a run's "
                             "folders whole: move them away or choose another --out")
    return manifest, own


# --- the lock ----------------------------------------------------------------------------------------------
def _lock_text() -> bytes:
    return json.dumps({"tool": TOOL, "host": socket.gethostname(), "pid": os.getpid(),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode()


def _lock_info(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode(errors="replace") or "{}")
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _holder_text(info: dict[str, Any]) -> str:
    if not info:
        return "another running process"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}"


def _open_lock(lock: Path, *, create: bool) -> int | None:
    """An fd on the lock file, never through a symbolic link and never on anything but a regular file.

    ``create``: make it (exclusively) when absent. None: absent (and not created)."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK  # NONBLOCK: a FIFO planted as .lock must not hang us
    try:
        fd = os.open(lock, flags | (os.O_CREAT | os.O_EXCL if create else 0), 0o644)
    except FileExistsError:
        return _open_lock(lock, create=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutputDirError(f"{lock} is a symbolic link; wxy_hw never writes through one (it would overwrite "
                                 f"the file it points to): remove the link, or choose another --out") from None
        if exc.errno in (errno.EISDIR, errno.ENXIO):
            raise OutputDirError(f"{lock} is not a regular file; remove it, or choose another --out") from None
        raise OutputDirError(f"--out {lock.parent}: cannot open its lock ({exc.strerror}); choose a writable --out") \
            from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutputDirError(f"{lock} is not a regular file; remove it, or choose another --out")
    return fd


def _held_by(lock: Path) -> str | None:
    """Who holds ``lock`` (words), or None when no live process does."""
    fd = _open_lock(lock, create=False)
    if fd is None:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder_text(_lock_info(fd))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def in_use(path: str | Path) -> str | None:
    """Who is writing ``path`` or a run directory inside it (words: the first live holder found), or None when no
    running process holds a lock there: what a cleanup or a set-aside checks before it moves or deletes a folder."""
    root = Path(path)
    if root.is_symlink() or not root.is_dir():
        return None
    for folder, _, files in os.walk(root):  # never into a symbolic link: a link's target is not ours to judge
        if LOCK_NAME in files:
            try:
                holder = _held_by(Path(folder) / LOCK_NAME)
            except OutputDirError:  # a link, FIFO or unreadable file as the lock: counted as held, so nothing moves
                return f"a lock that cannot be read ({Path(folder) / LOCK_NAME})"
            if holder is not None:
                return f"{holder} ({folder})"
    return None


def _take_lock(key: Path, path: str | Path) -> int:
    """Create (or take over a stale) ``<key>/.lock`` and hold its flock; returns the fd."""
    lock = key / LOCK_NAME
    for _ in range(20):
        fd = _open_lock(lock, create=True)
        if fd is None:  # vanished between two looks: try again
            continue
        for attempt in range(5):  # another process's look at the lock (_held_by) holds it for microseconds
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 4:
                    info = _lock_info(fd)
                    os.close(fd)
                    raise OutputDirError(f"--out {path} is being written by {_holder_text(info)}; wait for it to "
                                         "finish or choose another --out") from None
                time.sleep(0.02)
        # The previous holder unlinks the lock file as it releases it: if it did so between our open and our
        # flock, we hold a vanished inode. Start again.
        try:
            same = os.fstat(fd).st_ino == os.stat(lock, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        stale = _lock_info(fd)
        if stale:  # a lock file that nobody holds: its process died without releasing it
            print(f"[wxy_hw] {lock}: taking over the lock of {_holder_text(stale)}, which is no longer running",
                  file=sys.stderr)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, _lock_text())
        return fd
    raise OutputDirError(f"--out {path}: its lock keeps changing under us; choose another --out")


def set_aside_run(path: str | Path, suffix: str = "damaged") -> Path:
    """``utils.set_aside`` for a run directory the tool found damaged or stale: refused, with one line
    (``OutputDirError``), while a running process writes in it or in a run inside it; otherwise moved under its own
    lock, so no process claims it halfway."""
    key = _key(path)
    holder = in_use(key)
    if holder is not None:
        raise OutputDirError(f"{path} is being written by {holder}, so it is not moved aside: wait for that run to "
                             "finish (or stop it), then run again")
    try:
        fd = _take_lock(key, path)  # a run that began since the look above is refused here
    except OutputDirError:
        raise OutputDirError(f"{path} is being written by another process, so it is not moved aside: wait for that "
                             "run to finish (or stop it), then run again") from None
    try:
        aside = set_aside(key, suffix)
        (aside / LOCK_NAME).unlink(missing_ok=True)
    finally:
        os.close(fd)
    return aside


# --- claiming and releasing ---------------------------------------------------------------------------------
def archive_of(path: str | Path) -> Path | None:
    """The archived run (``ARCHIVE_MARK`` beside a manifest) that ``path`` is or lies inside, else None."""
    key = _key(path)
    for folder in [key, *key.parents]:
        mark = folder / ARCHIVE_MARK
        try:
            if mark.is_file() and (folder / MANIFEST).is_file() and mark.read_text(errors="replace").startswith("run: "):
                return folder
        except OSError:
            continue
    return None


def claim_run_dir(path: str | Path, *, overwrite: bool = False, resume: bool = False, kind: str | None = None,
                  inputs: Iterable[str | Path] = ()) -> Path:
    """Reserve ``path`` as this process's run directory before any work starts.

    Refuses, with one line each: a path that is a file or lies under one; an archived run under results/ (or a
    folder inside one); a directory another
    process is writing; a non-empty directory that is not a wxy_hw run; a run, unless ``overwrite``
    (its recorded outputs are cleared when the new run starts; refused if the directory holds
    anything else or one of ``inputs``) or ``resume`` (continue in place; ``kind`` must match).
    Claims are reentrant within a process; each must be paired with ``release_run_dir``.
    """
    key = _key(path)
    if key in _CLAIMS:
        _CLAIMS[key].refs += 1
        return key
    for parent in [key, *key.parents]:
        if parent.is_symlink() and parent == key:
            break  # a symlinked run directory is the user's choice; its contents are checked as any directory's
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == key else f"lies under {parent}, which is a file"
            raise OutputDirError(f"--out {path} {where}; give a directory path for the run")
    archive = archive_of(key)
    if archive is not None:  # resume or overwrite would turn the record behind a table into a training folder
        where = "is" if archive == key else "lies inside"
        raise OutputDirError(f"--out {path} {where} {archive}, an archived run (its {ARCHIVE_MARK} names the commit "
                             "behind a docs table), which is kept as it is; write to another --out (e.g. under runs/)")
    inputs = list(inputs)

    def check() -> tuple[list[str], dict[str, Any], list[str] | None]:
        entries = _entries(key) if key.is_dir() else []
        if not entries:
            return entries, {}, None
        manifest, clear = _refuse_used(key, entries, overwrite=overwrite, resume=resume, kind=kind, inputs=inputs)
        return entries, manifest, clear

    if key.is_dir():
        holder = _held_by(key / LOCK_NAME)
        if holder is not None:
            raise OutputDirError(f"--out {path} is being written by {holder}; wait for it to finish or choose "
                                 "another --out")
        check()  # before touching anything: a refused directory stays byte-identical
    created = not key.exists()
    try:
        key.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputDirError(f"--out {path}: cannot create the run directory ({exc.strerror}); "
                             "choose a writable --out") from exc
    fd = _take_lock(key, path)
    try:
        entries, manifest, clear = check()  # again under the lock: the directory may have changed since
    except OutputDirError:
        os.close(fd)
        raise
    before = [e for e in entries if clear is None or e not in clear]
    _CLAIMS[key] = _Claim(fd, 1, created, before, previous=manifest if resume else {}, clear=clear or None)
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


def _clear_previous(key: Path, own: list[str]) -> None:
    """--overwrite: remove the previous run's own outputs, the manifest last, so an interrupted clear stays
    recognisable. A symbolic link is removed as a link; nothing it points to is touched."""
    manifest = key / MANIFEST
    old = read_marker(key) or {}
    if old:
        old["status"] = "being overwritten"
        atomic_write_text(manifest, json.dumps(old, indent=2, default=str) + "\n")
    for name in own:
        if name == MANIFEST:
            continue
        entry = key / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()
    manifest.unlink(missing_ok=True)


# --- signals -------------------------------------------------------------------------------------------------
class Terminated(KeyboardInterrupt):
    """SIGTERM / SIGHUP, delivered as an interrupt so every ``except KeyboardInterrupt`` path cleans up alike."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


received_signal: int | None = None  # the last SIGTERM / SIGHUP, for the exit status (128 + signal)


def exit_status(exc: BaseException) -> int:
    """The exit status of a command ended by ``exc`` (an interrupt): 128 + the signal, 130 for Ctrl-C."""
    if isinstance(exc, Terminated):
        return 128 + exc.signum
    return 128 + received_signal if received_signal is not None else 130


@contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Inside the block SIGTERM and SIGHUP raise ``Terminated`` (a KeyboardInterrupt), as Ctrl-C would (unless the
    process started with them ignored, as under ``nohup``)."""
    global received_signal
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    received_signal = None

    def handler(signum: int, frame: Any) -> None:
        global received_signal
        received_signal = signum
        raise Terminated(signum)

    # a signal ignored when we started stays ignored: `nohup cmd &` must survive the terminal closing (SIGHUP)
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP) if signal.getsignal(s) != signal.SIG_IGN}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def run_dir_guard(path: str | Path | None, *, overwrite: bool = False, resume: bool = False, kind: str | None = None,
                  inputs: Iterable[str | Path] = ()) -> Iterator[None]:
    """Claim ``path`` (when given) for a whole command; a failure, Ctrl-C, SIGTERM or SIGHUP marks the manifest of
    every run opened inside it and releases the lock. A run opened before (an outer command's, e.g. a search that
    trains its models through ``train_run``) is left to its own guard: an exception the outer command handles
    (a pruned training) must not end its record."""
    with signals_as_interrupts():
        if path is not None:
            claim_run_dir(path, overwrite=overwrite, resume=resume, kind=kind, inputs=inputs)
        outer = list(_ACTIVE)
        try:
            yield
        except BaseException as exc:
            for run in list(_ACTIVE):
                if not any(run is o for o in outer):
                    run.abort(exc)
            raise
        finally:
            if path is not None:
                release_run_dir(path)


# --- the run and its manifest ----------------------------------------------------------------------------------
def _record_write(path: Path) -> None:
    """``atomic_write``'s hook: a file written into an open run's folder makes its top-level entry that run's own,
    and, below the top level, the file itself (recorded by the innermost open run holding it: an enclosing run
    defers to that run's manifest), recorded in the manifest at once (so even a killed run's manifest lists what
    it wrote)."""
    holders = []
    for run in list(_ACTIVE):
        try:
            parts = Path(os.path.abspath(path)).relative_to(os.path.abspath(run.path)).parts
        except ValueError:
            continue
        if parts:
            holders.append((run, parts))
    innermost = max(holders, key=lambda h: len(Path(os.path.abspath(h[0].path)).parts), default=None)
    for run, parts in holders:
        if parts[0] == MANIFEST:
            continue
        changed = parts[0] not in run.recorded
        run.recorded.add(parts[0])
        rel = "/".join(parts)
        # a nested manifest.json is the marker of the run in that folder (written before it opens), which owns it
        if len(parts) > 1 and parts[-1] != MANIFEST and innermost and run is innermost[0] and run.files is not None \
                and rel not in run.files:
            run.files.add(rel)
            changed = True
        if changed:
            run.write_manifest()


utils.WRITE_HOOKS.append(_record_write)



def one_line_reason(exc: BaseException) -> str:
    """An exception as the one line a manifest records."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def machine_seconds(manifest: dict[str, Any]) -> float:
    """The seconds of its machine a finished run took: a run that used t of its c cores (``torch_threads``, the
    host's ``cpu_count``) counts t / c of its wall time, so runs trained side by side (``--workers``) are not counted
    twice; a run recorded before threads were counts whole."""
    threads, cores = manifest.get("torch_threads"), (manifest.get("host") or {}).get("cpu_count")
    share = min(1.0, threads / cores) if isinstance(threads, int) and isinstance(cores, int) and cores else 1.0
    return float(manifest.get("wall_time_s", 0.0)) * share


class RunDirectory:
    """A results directory with a manifest written at start and completed (or marked failed) at the end."""

    def __init__(self, path: str | Path, config: dict[str, Any], *, kind: str) -> None:
        self.path = Path(path)
        key = claim_run_dir(self.path, kind=kind)
        claim = _CLAIMS[key]
        if claim.opened:  # e.g. a library call re-using the directory of an earlier run that failed in this process
            release_run_dir(key)
            raise OutputDirError(f"--out {path} already holds a run started earlier in this process; "
                                 "choose another --out")
        claim.opened = True
        if claim.clear is not None:
            _clear_previous(key, claim.clear)
            claim.clear = None
        self._before = set(claim.before)
        self.recorded: set[str] = set()  # entries a file was written into while the run was open
        # the files it wrote below the top level (and the run it resumes); None when it resumes a run whose manifest
        # predates that record, which stays a run whose folders are its own whole
        self.files: set[str] | None = set() if not claim.previous else _written_files(claim.previous)
        # a resumed run's earlier outputs stay its own, with the run folders its workers wrote before it was stopped
        # (a Ray worker's files pass no hook here: a run killed before it ended never listed them)
        self._inherited = set(claim.previous.get("outputs", claim.before if claim.previous else []))
        if claim.previous:
            self._inherited |= {e for e in claim.before if _holds_a_run(self.path / e)}
        self.previous: dict[str, Any] = dict(claim.previous)  # the manifest of the run this one resumes ({} if none)
        self.t0 = time.time()
        self.manifest: dict[str, Any] = {
            "tool": TOOL,
            "schema": SCHEMA,
            "kind": kind,
            "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
            "config": config,
            "seed": config.get("seed"),
            "versions": package_versions(),
            "git": git_commit(),
            "host": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "name": socket.gethostname()},
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "status": "running",
            "preexisting": sorted(self._before - self._inherited),  # for the record: never removed by --overwrite
            "outputs": [],
        }
        self.write_manifest()
        _ACTIVE.append(self)

    def outputs(self) -> list[str]:
        """The top-level entries this run (and the run it resumed) wrote: those a file was written into through
        ``atomic_write`` (or ``own`` names), and new folders holding runs that worker processes wrote. Anything
        else that appeared meanwhile (a note a user dropped in) is not the run's, so --overwrite never removes it."""
        now = set(_entries(self.path)) if self.path.is_dir() else set()
        workers = {e for e in now - self._before - self.recorded - self._inherited if _holds_a_run(self.path / e)}
        return sorted((self._inherited | self.recorded | workers | {MANIFEST}) & (now | {MANIFEST}))

    def own(self, *names: str) -> None:
        """Record top-level ``names`` as this run's outputs though they are not written through ``atomic_write``
        (a database a library keeps, e.g. the co-design search's study.db)."""
        self.recorded.update(names)
        self.write_manifest()

    def write_manifest(self) -> Path:
        """(Re)write manifest.json atomically, with the outputs as they are now."""
        self.manifest["outputs"] = self.outputs()
        if self.files is not None:
            self.manifest["files"] = sorted(self.files)
        return atomic_write_text(self.path / MANIFEST, json.dumps(self.manifest, indent=2, default=str) + "\n")

    def finish(self, **results: Any) -> Path:
        """Record results and wall time; mark the run complete."""
        self.manifest.update(results)
        self.manifest["wall_time_s"] = round(time.time() - self.t0, 2)
        self.manifest["status"] = "complete"
        path = self.write_manifest()
        self._close()
        return path

    def end(self, status: str, reason: str) -> None:
        """Mark the run ended with ``status`` (failed, interrupted, diverged) and ``reason``; release the directory."""
        if self not in _ACTIVE:
            return
        self.manifest["status"] = status
        self.manifest["reason"] = reason
        self.manifest["wall_time_s"] = round(time.time() - self.t0, 2)
        try:
            self.write_manifest()
        except OSError as exc:  # e.g. the disk that ended the run is still full: the run still ends, and says so
            print(f"[wxy_hw] could not record the end of the run in {self.path / MANIFEST}: {exc}", file=sys.stderr)
        finally:
            self._close()

    def abort(self, exc: BaseException) -> None:
        """Mark the run failed (or interrupted, for Ctrl-C and signals) with the reason, and release the directory."""
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else \
            getattr(exc, "run_status", None) or "failed"
        reason = one_line_reason(exc)
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Terminated) and received_signal is not None:
            reason = f"stopped by {signal.Signals(received_signal).name}: {reason}"  # re-raised as another interrupt
        self.end(status, reason)

    def _close(self) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
            release_run_dir(self.path)
