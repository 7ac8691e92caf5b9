"""Small shared helpers: seeding, device selection, atomic file writes, reading back what was written, deprecations."""
from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import random
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch


# Old spellings (command-line flags, config keywords, keyword arguments) keep working, with a warning naming this
# release, which removes them: two minor releases after the one that renamed them (0.1, pyproject.toml).
REMOVED_IN = "0.3"


def deprecated(old: str, new: str) -> str:
    """The one deprecation sentence: ``old`` still works until wxy_hw REMOVED_IN; ``new`` is what to write."""
    return f"{old} is deprecated and will be removed in wxy_hw {REMOVED_IN}; use {new}"


def warn_deprecated(old: str, new: str, stacklevel: int = 3) -> None:
    """A DeprecationWarning with ``deprecated(old, new)``, pointing at the caller of the function that calls this."""
    warnings.warn(deprecated(old, new), DeprecationWarning, stacklevel=stacklevel)


def few_names(names: Iterable[str], shown: int = 5) -> str:
    """The first ``shown`` names, then a count of the rest: a list in a one-line message."""
    names = list(names)
    return ", ".join(names[:shown]) + (f" (+{len(names) - shown} more)" if len(names) > shown else "")


# torch's and numpy's generators take 64-bit seeds: the one range of a seed, on the command line and in a file
MAX_SEED = 2 ** 63 - 1


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Map "auto" to CUDA when available, else CPU; pass explicit devices through.

    The messages name --torch-device, the flag that sets this (--device names the simulated hardware)."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"unknown torch device {str(device)!r}; use --torch-device auto, cpu, cuda or cuda:N") \
            from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--torch-device {str(device)!r} asked for, but this torch build sees no CUDA GPU; "
                             "use --torch-device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--torch-device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) "
                             f"visible; use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return dev


# called with every path atomic_write has put in place (wxy_hw.run_dir records a run's outputs this way)
WRITE_HOOKS: list[Callable[[Path], None]] = []


class NoSpaceError(OSError):
    """The disk (or quota) holding an output is full; nothing was half-written."""

    def __str__(self) -> str:
        return str(self.strerror)


def _umask() -> int:
    # os.umask can only be read by setting it; set it back at once (outputs must follow the user's umask)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _out_of_space(exc: BaseException, directory: Path) -> bool:
    """Whether ``exc`` is a full disk: ENOSPC / EDQUOT anywhere in its chain, or a writer's own error (torch's zip
    writer says "unexpected pos ...") on a file system with no room left."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    try:
        fs = os.statvfs(directory)
        return isinstance(exc, RuntimeError) and fs.f_bavail * fs.f_frsize < 1 << 20
    except OSError:
        return False


def _interrupt_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (Ctrl-C, or a signal raised as one) that ``exc`` is or was raised while handling."""
    seen: BaseException | None = exc
    for _ in range(20):  # a bounded walk: context chains are short, and never trusted to end
        if seen is None:
            return None
        if isinstance(seen, KeyboardInterrupt):
            return seen
        seen = seen.__context__
    return None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # a file system that cannot open a folder for reading cannot fsync it either
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], Any]) -> Path:
    """Write a file through a temporary sibling and rename it into place.

    A crash mid-write leaves the previous file untouched instead of a truncated one; a full disk
    raises ``NoSpaceError`` naming the file, with the temporary file removed. The file gets the
    permissions any new file gets under the user's umask (mkstemp alone would make it 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)  # the rename itself survives a power cut, not only the bytes
        for hook in WRITE_HOOKS:
            hook(path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        interrupt = _interrupt_behind(exc)
        if interrupt is not None and interrupt is not exc:
            # Ctrl-C or a signal landed inside the writer, whose own cleanup then failed (torch.save's zip writer
            # raises "unexpected pos"): the interrupt is what happened, and what the command must report
            raise interrupt from None
        if isinstance(exc, Exception) and _out_of_space(exc, path.parent):
            raise NoSpaceError(errno.ENOSPC, f"no space left on the disk holding {path}; nothing was half-written: "
                                             "free some space (or choose an --out on another disk) and run again") \
                from None
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically write a text file (UTF-8)."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """torch.save through a temporary file and rename."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))


@contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``module`` in eval mode inside the block; its previous train / eval mode is restored after, even on error."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


# --- reading back what the tool wrote --------------------------------------------------------------------
class DamagedFileError(ValueError):
    """A file this tool wrote reads back truncated, not JSON / CSV, or of the wrong shape; the message names the
    file, the problem and the fix (a ValueError, so every CLI reports it as one line)."""

    def __init__(self, path: Path, problem: str, fix: str) -> None:
        super().__init__(f"{path} {problem}; {fix}")
        self.path, self.problem, self.fix = path, problem, fix

    def __reduce__(self) -> tuple[Any, ...]:  # pickled whole (Ray tasks send errors back to the caller)
        return type(self), (self.path, self.problem, self.fix)


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "true / false", type(None): "null"}


def json_types(value: Any) -> Any:
    """``value`` as JSON gives it back — tuples as lists, numbers and strings as Python's own (a weights-only
    checkpoint refuses numpy's) — so settings compare equal after a round trip."""
    if isinstance(value, dict):
        return {str(k): json_types(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_types(v) for v in value]
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # a numpy scalar, a 0-d array or tensor
        value = value.item()
    for kind in (bool, int, float, str):  # bool first: it is an int
        if isinstance(value, kind):
            return kind(value)
    return value


def read_json(path: str | Path, fix: str, kind: type = dict) -> Any:
    """The JSON value in ``path`` (a file this tool wrote), which must be a ``kind`` (dict or list).

    A truncated, non-JSON or wrong-type file raises ``DamagedFileError``: "<path> <problem>; <fix>".
    A missing file raises FileNotFoundError as open() does: callers decide what absent means.
    """
    path = Path(path)
    text = _read_text(path, "JSON", fix)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        # the tool writes whole documents that end with their closing bracket: anything else was cut short
        cut = not text.rstrip().endswith(("}", "]"))
        problem = ("is empty" if not text.strip() else "is truncated (it ends mid-document)" if cut
                   else f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
        raise DamagedFileError(path, problem, fix) from None
    if not isinstance(value, kind):
        raise DamagedFileError(path, f"holds {_JSON_TYPES.get(type(value), type(value).__name__)}, not "
                                     f"{_JSON_TYPES.get(kind, kind.__name__)} as written", fix)
    return value


def read_csv(path: str | Path, fix: str, columns: Sequence[str] = ()) -> list[dict[str, str]]:
    """The rows of ``path`` (a CSV this tool wrote) as dicts keyed by its header, which must hold ``columns``.

    A file cut short (no final line end, a row with fewer or more fields than the header), one without
    a header or ``columns`` raises ``DamagedFileError``: "<path> <problem>; <fix>". A file of one line
    end is a table without rows (what ``write_rows_csv`` writes for none): [].
    """
    path = Path(path)
    text = _read_text(path, "CSV", fix)
    if text in ("\n", "\r\n"):
        return []

    def damaged(problem: str) -> DamagedFileError:
        return DamagedFileError(path, problem, fix)

    if not text.strip():
        raise damaged("is empty (no header)")
    if not text.endswith("\n"):  # every line the tool writes ends with one
        raise damaged("is truncated (its last line has no line end)")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise damaged(f"has no column {', '.join(missing)} (its header: {','.join(header)})")
        rows = []
        for row in reader:
            if None in row or None in row.values():  # DictReader's marks of a row longer / shorter than the header
                fields = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
                raise damaged(f"line {reader.line_num} has {fields} fields where the header has {len(header)} "
                              "(truncated or damaged)")
            rows.append(row)
    except csv.Error as exc:
        raise damaged(f"is not a valid CSV ({exc})") from None
    return rows


def _read_text(path: Path, what: str, fix: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DamagedFileError(path, f"is not text, so not a {what} file this tool wrote", fix) from None


def _link_aside(path: Path, aside: Path) -> None:
    """Move a file to ``aside`` without ever replacing one there: a hard link (which fails if the name is taken) then
    the unlink; on a file system without hard links, a rename after one more look."""
    try:
        os.link(path, aside, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if os.path.lexists(aside):
            raise FileExistsError(errno.EEXIST, "taken", str(aside)) from None
        path.rename(aside)
        return
    os.unlink(path)


def set_aside(path: str | Path, suffix: str = "damaged") -> Path:
    """Rename ``path`` to the first free ``<name>.<suffix>`` (then ``.<suffix>2``, ...) beside it; the new path.

    What the tool recovers from (a run of its own that no longer reads back) is kept for a look, never deleted.
    """
    path = Path(path)
    for n in range(1, 1000):
        aside = path.with_name(f"{path.name}.{suffix}{n if n > 1 else ''}")
        if os.path.lexists(aside):  # a dangling link too: the name is taken
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                # rename(2) replaces only an empty directory (no loss) and fails on any other entry: no clobbering
                path.rename(aside)
            else:
                _link_aside(path, aside)
            for hook in WRITE_HOOKS:  # in an open run's folder the kept copy is that run's, as any file it writes
                hook(aside)
            return aside
        except (FileExistsError, IsADirectoryError, NotADirectoryError):
            continue
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                continue
            raise
    raise FileExistsError(f"{path}: {path.name}.{suffix} .. {path.name}.{suffix}999 all exist; remove some of them")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (large checkpoints and wheels)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_hashed(path: str | os.PathLike) -> tuple[bytes | None, str | None]:
    """A file's bytes and their sha256, read once, so that what is used is what was hashed (None, None where there
    is no file: the reader of those bytes then says so in its own words)."""
    if not Path(path).is_file():
        return None, None
    content = Path(path).read_bytes()
    return content, hashlib.sha256(content).hexdigest()


def data_dir(folder: str) -> Path:
    """A top-level data folder that comes with wxy_hw (``devices``, ``zoo``): beside ``wxy_hw/`` and
    ``pyproject.toml`` in a source checkout, inside the package (``wxy_hw/<folder>``) once a wheel is installed
    (pyproject.toml maps the folder to the package ``wxy_hw.<folder>``)."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / folder).is_dir():
        return checkout / folder
    from importlib import resources
    return Path(str(resources.files("wxy_hw"))) / folder
