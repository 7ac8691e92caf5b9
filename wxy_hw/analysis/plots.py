"""Plots for sweeps: one function per figure, reading the tidy summary rows the sweeps write."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..output import colors as _colors, plt, save_figure as _save

EXIT_ORDER = ["1", "2", "3", "4", "ensemble"]


def _exits(rows: Sequence[dict[str, Any]]) -> list[str]:
    present = {str(r["exit"]) for r in rows}
    return [e for e in EXIT_ORDER if e in present] + sorted(present - set(EXIT_ORDER))


def _exit_title(e: str, n_exits: int) -> str:
    return "ensemble" if e == "ensemble" else f"exit {e}/{n_exits}"


def plot_metric_by_exit(summary: Sequence[dict[str, Any]], x_key: str, path: Path, *, title: str,
                        xlabel: str, log_x: bool = False, metric: str = "accuracy") -> list[Path]:
    """One panel per exit: mean ± std of ``metric`` vs ``x_key``, one line per method."""
    exits = _exits(summary)
    n_exits = sum(e != "ensemble" for e in exits) or 1
    methods = list(dict.fromkeys(r["method"] for r in summary))
    colors = _colors(methods)
    fig, axes = plt.subplots(1, len(exits), figsize=(3.2 * len(exits), 3.4), sharey=True, squeeze=False)
    for ax, e in zip(axes[0], exits):
        for m in methods:
            pts = sorted((r[x_key], r[f"{metric}_mean"], r[f"{metric}_std"]) for r in summary
                         if r["method"] == m and str(r["exit"]) == e)
            if not pts:
                continue
            xs, ys, sd = zip(*pts)
            ax.plot(xs, ys, marker="o", ms=3, label=m, color=colors[m])
            ax.fill_between(xs, [y - s for y, s in zip(ys, sd)], [y + s for y, s in zip(ys, sd)],
                            color=colors[m], alpha=0.2, linewidth=0)
        ax.set_title(_exit_title(e, n_exits))
        ax.set_xlabel(xlabel)
        if log_x:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"test {metric}" + (" (%)" if metric == "accuracy" else ""))
    handles = [plt.Line2D([], [], color=colors[m], marker="o", ms=3, label=m) for m in methods]
    fig.legend(handles=handles, loc="upper center", ncol=len(methods), bbox_to_anchor=(0.5, 1.04), fontsize=9,
               frameon=False)
    fig.suptitle(title + "  (line: mean, band: ±1 std over chips)", y=1.12)
    return _save(fig, path)


def plot_flat_minima(summary: Sequence[dict[str, Any]], path: Path, *, title: str, exit_key: str = "4") -> list[Path]:
    """The seed's flat-minima figure: accuracy and loss vs σ of Gaussian weight noise, one line per method."""
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.6))
    methods = list(dict.fromkeys(r["method"] for r in summary))
    colors = _colors(methods)
    for m in methods:
        rows = sorted((r for r in summary if r["method"] == m and str(r["exit"]) == exit_key),
                      key=lambda r: r["sigma"])
        if not rows:
            continue
        xs = [r["sigma"] for r in rows]
        ax_acc.plot(xs, [r["accuracy_mean"] for r in rows], marker="o", ms=3, label=m, color=colors[m])
        ax_acc.fill_between(xs, [r["accuracy_mean"] - r["accuracy_std"] for r in rows],
                            [r["accuracy_mean"] + r["accuracy_std"] for r in rows], color=colors[m],
                            alpha=0.2, linewidth=0)
        ax_loss.plot(xs, [r["loss_mean"] for r in rows], marker="o", ms=3, label=m, color=colors[m])
    ax_acc.set_ylabel("training accuracy (%)")
    ax_loss.set_ylabel("training loss")
    for ax in (ax_acc, ax_loss):
        ax.set_xlabel("weight-noise σ / per-layer |W|max")
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
