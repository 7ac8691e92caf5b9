"""Run output, in one place: tidy CSV rows, plain-text tables, figures (headless backend set once here).

Every module that writes a CSV, a table or a figure imports it from here; nothing else calls
``matplotlib.use``.
"""
from __future__ import annotations

import csv
import functools
import io
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt
import matplotlib.ticker as ticker

from .utils import atomic_write, atomic_write_text

__all__ = ["plt", "ticker", "write_rows_csv", "format_table", "colors", "save_figure", "interactive", "log_axis"]


def deepest_exit(rows: Iterable[dict[str, Any]]) -> str:
    """The deepest numbered exit among tidy rows (their "exit" column: "1".."4", "ensemble", ...)."""
    return max((str(r["exit"]) for r in rows if str(r["exit"]).isdigit()), key=int)


def write_rows_csv(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write tidy rows (union of keys, in first-seen order) to a CSV atomically."""
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return atomic_write_text(path, buf.getvalue())


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str = "") -> str:
    """A plain-text (markdown-compatible) table; floats with two decimals, missing cells as '—'."""
    def cell(v: Any) -> str:
        if v is None:
            return "—"
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(s.ljust(w) for s, w in zip(cells, widths)) + " |"

    out = [title] if title else []
    out += [line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(b) for b in body]
    return "\n".join(out)


def colors(names: Sequence[str]) -> dict[str, Any]:
    """One fixed colour per name (method, device), the same in every panel."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {m: cycle[i % len(cycle)] for i, m in enumerate(names)}


def save_figure(fig: Any, path: Path) -> list[Path]:
    """Save ``fig`` as PNG and SVG beside each other (atomically) and close it; returns both paths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [path.with_suffix(".png"), path.with_suffix(".svg")]
    for p in out:  # through a temporary file, so an interrupted run never leaves a half-written figure
        atomic_write(p, functools.partial(fig.savefig, format=p.suffix[1:], dpi=130, bbox_inches="tight"))
    plt.close(fig)
    return out


def log_axis(ax: Any, axis: str = "x") -> None:
    """Make ``axis`` logarithmic with readable ticks: plain numbers (5, 10, 20, not 2×10¹), and on a range of
    less than two decades labelled minor ticks at 2 and 5 × 10ⁿ so short ranges are never left unlabelled.

    Call it after plotting (the labels follow the data's range)."""
    which = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")
    which.set_major_locator(ticker.LogLocator(base=10))
    which.set_major_formatter(plain)
    if lo > 0 and hi / lo < 100:
        which.set_minor_locator(ticker.LogLocator(base=10, subs=(2.0, 5.0)))
        which.set_minor_formatter(plain)
    else:
        which.set_minor_formatter(ticker.NullFormatter())


def interactive(stream: Any = None) -> bool:
    """Whether progress bars may draw: only on a terminal (a redirected log gets one line per step instead)."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
