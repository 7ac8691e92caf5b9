"""The reproduction report: each claim of the seed beside our number and a verdict, as HTML and Markdown.

The HTML is one self-contained file (figures embedded as base64 PNG, inline style, no script,
no external reference), so it can be mailed, archived or opened offline.
"""
from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..utils import atomic_write_text
from .stats import PairedTest

VERDICTS = ("reproduced", "not reproduced", "inconclusive")

VERDICT_RULE = ("A claim that method A beats B is **reproduced** when our paired difference A − B (over the same "
                "seeds, and chips on hardware) has the seed's sign and a two-sided p < {alpha}; **not reproduced** "
                "when it has the opposite sign with p < {alpha}; **inconclusive** otherwise (too few seeds or too "
                "small an effect to tell). A claim about a level (e.g. no accuracy drop) states its own test in "
                "its row.")


def difference_verdict(test: PairedTest, expected_sign: int = 1, alpha: float = 0.05) -> str:
    """Verdict for "A beats B" (expected_sign = +1) or "A is below B" (−1) from a paired test."""
    if expected_sign not in (1, -1):
        raise ValueError(f"expected_sign must be +1 or −1, got {expected_sign}")
    if math.isnan(test.p_value) or test.p_value >= alpha or test.difference.mean == 0:
        return "inconclusive"
    return "reproduced" if (test.difference.mean > 0) == (expected_sign > 0) else "not reproduced"


@dataclass
class Claim:
    """One claim of the seed, our measurement of it, and the verdict."""

    section: str
    claim: str
    seed_value: str  # what the seed reports, with its table / figure
    ours: str  # our number ± interval, with seeds / chips
    verdict: str
    command: str  # the command that produced ``ours``
    note: str = ""
    figures: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"claim {self.claim!r}: verdict must be one of {VERDICTS}, got {self.verdict!r}")


def _png_data_uri(path: Path) -> str:
    data = Path(path).read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"report figure {path} is not a PNG file")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;width:100%;margin:1em 0}th,td{border:1px solid #ccc;padding:.35em .5em;
vertical-align:top;text-align:left}th{background:#f3f3f3}.reproduced{background:#e3f4e3}
.not-reproduced{background:#f9e0e0}.inconclusive{background:#f6f2dc}code{font-size:90%}
figure{display:inline-block;margin:.5em}img{max-width:520px}"""


def render_html(claims: Sequence[Claim], *, title: str, preamble: str, alpha: float = 0.05) -> str:
    """The self-contained HTML report."""
    esc = html.escape
    rule = esc(VERDICT_RULE.format(alpha=alpha)).replace("**", "")
    counts = {v: sum(c.verdict == v for c in claims) for v in VERDICTS}
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{esc(title)}</h1><p>{esc(preamble)}</p>",
             f"<p><b>Verdict rule.</b> {rule}</p>",
             "<p>" + ", ".join(f"{counts[v]} {v}" for v in VERDICTS) + "</p>",
             "<table><tr><th>section</th><th>claim</th><th>seed</th><th>ours</th><th>verdict</th>"
             "<th>command</th></tr>"]
    for c in claims:
        note = f"<br><small>{esc(c.note)}</small>" if c.note else ""
        parts.append(f"<tr class='{c.verdict.replace(' ', '-')}'><td>{esc(c.section)}</td><td>{esc(c.claim)}{note}</td>"
                     f"<td>{esc(c.seed_value)}</td><td>{esc(c.ours)}</td><td><b>{esc(c.verdict)}</b></td>"
                     f"<td><code>{esc(c.command)}</code></td></tr>")
    parts.append("</table>")
    for c in claims:
        for fig in c.figures:
            parts.append(f"<figure><img src='{_png_data_uri(fig)}' alt='{esc(fig.name)}'>"
                         f"<figcaption>{esc(c.section)}: {esc(fig.name)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(claims: Sequence[Claim], *, title: str, preamble: str, alpha: float = 0.05) -> str:
    """The same report as Markdown (figures referenced by file name, not embedded)."""
    cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = [f"# {title}", "", preamble, "", "**Verdict rule.** " + VERDICT_RULE.format(alpha=alpha), "",
             "| section | claim | seed | ours | verdict | command |", "|---|---|---|---|---|---|"]
    for c in claims:
        claim = c.claim + (f" ({c.note})" if c.note else "")
        lines.append(f"| {cell(c.section)} | {cell(claim)} | {cell(c.seed_value)} | {cell(c.ours)} | "
                     f"**{c.verdict}** | `{cell(c.command)}` |")
    figures = [f.name for c in claims for f in c.figures]
    if figures:
        lines += ["", "Figures: " + ", ".join(figures)]
    return "\n".join(lines) + "\n"


def write_report(out: str | Path, claims: Sequence[Claim], *, title: str, preamble: str,
                 alpha: float = 0.05) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into ``out`` (each atomically); return both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    page = render_html(claims, title=title, preamble=preamble, alpha=alpha)
    md = render_markdown(claims, title=title, preamble=preamble, alpha=alpha)
    atomic_write_text(out / "report.html", page)
    atomic_write_text(out / "report.md", md)
    return out / "report.html", out / "report.md"
