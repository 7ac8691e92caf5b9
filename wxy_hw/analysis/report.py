"""The reproduction report: each claim of the seed beside our number and a verdict, as HTML and Markdown.

The HTML is one self-contained file (figures embedded as base64 PNG, inline style, no script,
no external reference), so it can be mailed, archived or opened offline.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..utils import atomic_write_text
from .verdicts import FAMILIES, MIN_SEEDS, OUTCOMES

VERDICTS = OUTCOMES
FAMILY_NAMES = {"seed": "the seed's claims", "extension": "extensions (not claimed by the seed)"}

VERDICT_RULE = ("Each claim is judged on its per-seed differences A − B (chips and test images averaged within a "
                "seed), against a margin fixed in the code before any run (the smallest effect that matters, its "
                "reason in claims.json). **reproduced**: the difference's interval lies beyond 0 in the seed's "
                "direction; **refuted**: beyond 0 the other way; **no effect**: the two one-sided tests (TOST) put "
                "it inside ± margin; **inconclusive**: none of these. A \"no drop\" claim is reproduced by TOST "
                "(or a significant gain) and refuted by a drop beyond its margin. p-values are Holm-adjusted within "
                "each family (the seed's claims; extensions) at level {alpha}. Fewer than " + str(MIN_SEEDS) +
                " seeds, or a claim the models cannot test as the seed states it: **not judged**.")


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
    family: str = "seed"  # "seed" (the seed claims it) or "extension" (ours)
    details: dict[str, Any] = field(default_factory=dict)  # the evidence: per-seed differences, margin, p-values
    reason: str = ""  # one line: why this verdict

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"claim {self.claim!r}: verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"claim {self.claim!r}: family must be one of {FAMILIES}, got {self.family!r}")


def verdict_counts(claims: Sequence[Claim]) -> str:
    """One line per family: how many claims ended in each verdict (verdicts with none left out)."""
    lines = []
    for fam in FAMILIES:
        members = [c for c in claims if c.family == fam]
        if members:
            parts = [f"{n} {v}" for v in VERDICTS if (n := sum(c.verdict == v for c in members))]
            lines.append(f"{FAMILY_NAMES[fam]}: {', '.join(parts)} (of {len(members)})")
    return "; ".join(lines)


@dataclass(frozen=True)
class Section:
    """A part of the report beside the claims (a finished co-design search): a title, its tables as plain text
    (shown as written), its figures (PNG, embedded in the HTML)."""

    title: str
    text: str
    figures: tuple[Path, ...] = ()


def _png_data_uri(path: Path) -> str:
    data = Path(path).read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"report figure {path} is not a PNG file")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;width:100%;margin:1em 0}th,td{border:1px solid #ccc;padding:.35em .5em;
vertical-align:top;text-align:left}th{background:#f3f3f3}.reproduced{background:#e3f4e3}
.refuted{background:#f9e0e0}.no-effect{background:#e3ecf7}.inconclusive{background:#f6f2dc}
.not-judged{background:#eee}code{font-size:90%}
figure{display:inline-block;margin:.5em}img{max-width:520px}"""


def render_html(claims: Sequence[Claim], *, title: str, preamble: str, alpha: float = 0.05,
                sections: Sequence[Section] = ()) -> str:
    """The self-contained HTML report."""
    esc = html.escape
    rule = esc(VERDICT_RULE.format(alpha=alpha)).replace("**", "")
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{esc(title)}</h1><p>{esc(preamble)}</p>",
             f"<p><b>Verdict rule.</b> {rule}</p>",
             f"<p>{esc(verdict_counts(claims))}</p>",
             "<table><tr><th>section</th><th>claim</th><th>seed</th><th>ours</th><th>verdict</th>"
             "<th>command</th></tr>"]
    for c in claims:
        note = f"<br><small>{esc(c.note)}</small>" if c.note else ""
        why = f"<br><small>{esc(c.reason)}</small>" if c.reason else ""
        parts.append(f"<tr class='{c.verdict.replace(' ', '-')}'><td>{esc(c.section)}</td><td>{esc(c.claim)}{note}</td>"
                     f"<td>{esc(c.seed_value)}</td><td>{esc(c.ours)}</td><td><b>{esc(c.verdict)}</b>{why}</td>"
                     f"<td><code>{esc(c.command)}</code></td></tr>")
    parts.append("</table>")
    for c in claims:
        for fig in c.figures:
            parts.append(f"<figure><img src='{_png_data_uri(fig)}' alt='{esc(fig.name)}'>"
                         f"<figcaption>{esc(c.section)}: {esc(fig.name)}</figcaption></figure>")
    for sec in sections:
        parts.append(f"<h2>{esc(sec.title)}</h2><pre>{esc(sec.text)}</pre>")
        parts += [f"<figure><img src='{_png_data_uri(fig)}' alt='{esc(fig.name)}'><figcaption>{esc(sec.title)}: "
                  f"{esc(fig.name)}</figcaption></figure>" for fig in sec.figures]
    parts.append("</body></html>")
    return "\n".join(parts)


def markdown_cell(text: object) -> str:
    """A Markdown table cell: pipes escaped, one line."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(claims: Sequence[Claim], *, title: str, preamble: str, alpha: float = 0.05,
                    sections: Sequence[Section] = ()) -> str:
    """The same report as Markdown (figures referenced by file name, not embedded)."""
    cell = markdown_cell
    lines = [f"# {title}", "", preamble, "", "**Verdict rule.** " + VERDICT_RULE.format(alpha=alpha), "",
             verdict_counts(claims) + ".", "",
             "| section | claim | seed | ours | verdict | command |", "|---|---|---|---|---|---|"]
    for c in claims:
        claim = c.claim + (f" ({c.note})" if c.note else "")
        why = f" ({c.reason})" if c.reason else ""
        lines.append(f"| {cell(c.section)} | {cell(claim)} | {cell(c.seed_value)} | {cell(c.ours)} | "
                     f"**{c.verdict}**{cell(why)} | `{cell(c.command)}` |")
    figures = [f.name for c in claims for f in c.figures]
    if figures:
        lines += ["", "Figures: " + ", ".join(figures)]
    for sec in sections:
        lines += ["", f"## {sec.title}", "", sec.text.strip()]
        lines += ["", "Figures: " + ", ".join(str(f) for f in sec.figures)] if sec.figures else []
    return "\n".join(lines) + "\n"


def write_report(out: str | Path, claims: Sequence[Claim], *, title: str, preamble: str,
                 alpha: float = 0.05, sections: Sequence[Section] = ()) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into ``out`` (each atomically); return both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    page = render_html(claims, title=title, preamble=preamble, alpha=alpha, sections=sections)
    md = render_markdown(claims, title=title, preamble=preamble, alpha=alpha, sections=sections)
    atomic_write_text(out / "report.html", page)
    atomic_write_text(out / "report.md", md)
    return out / "report.html", out / "report.md"
