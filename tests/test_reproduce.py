"""experiments/reproduce.py at the smoke budget: every step runs, every claim gets a verdict, the HTML stands alone."""
from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
import pytest

from wxy_hw.analysis.report import VERDICTS
from wxy_hw.cli import reproduce
from wxy_hw.studies.reproduce import BUDGETS, _series


class _Page(HTMLParser):
    """Collects image sources, external references and the verdict cell of every claim row."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src", ""))
        for key in ("href", "src"):
            if a.get(key, "").startswith(("http:", "https:", "//")) or (tag in ("link", "script") and key in a):
                self.external.append(a[key])
        if tag == "tr":
            self._row = []
        if tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_series_labels():
    assert _series("baseline") == "baseline"
    assert _series("self_distillation+hwa + BN recal") == "self_distillation+hwa + BN recal"
    assert _series("hwa:s0 + BN recal") == "hwa + BN recal"


def test_budgets_are_ordered():
    small, medium, full = BUDGETS["small"], BUDGETS["medium"], BUDGETS["full"]
    assert len(small.seeds) >= 3 and len(full.seeds) >= len(medium.seeds) >= 3  # an interval needs ≥ 2, a test ≥ 3
    assert small.epochs <= medium.epochs <= full.epochs
    assert set(small.devices) == {"reram", "pcm", "subthreshold_cmos"}


@pytest.mark.slow
def test_smoke_reproduction_writes_a_self_contained_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # cached default models land in tmp_path/runs/cache
    out = tmp_path / "rep"
    assert reproduce.main(["--budget", "smoke", "--out", str(out), "--quiet"]) == 0
    page = _Page()
    page.feed((out / "report.html").read_text())
    assert page.external == []
    assert page.images, "the report embeds its figures"
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
    claims = json.loads((out / "claims.json").read_text())
    assert len(claims) >= 20
    assert [r[4] for r in page.rows] == [c["verdict"] for c in claims]
    assert all(c["verdict"] in VERDICTS and c["ours"] and c["seed_value"] and c["command"] for c in claims)
    sections = {c["section"] for c in claims}
    for part in ("Table 1", "Table 2", "Table 3", "SCAN dynamic", "ADA", "Auxiliary", "Calibrator", "Flat minima",
                 "reram chips"):
        assert any(part in s for s in sections), part
    md = (out / "report.md").read_text()
    assert md.count("| **") == len(claims)
    commands = (out / "commands.sh").read_text()
    assert all(c["command"] in commands for c in claims)
    # a second run reuses every finished step and gives the same report
    before = (out / "report.md").read_text()
    assert reproduce.main(["--budget", "smoke", "--out", str(out), "--quiet"]) == 0
    assert (out / "report.md").read_text() == before
