"""The reproduction report: verdict rule, self-contained HTML (parses, images embedded), Markdown."""
from __future__ import annotations

from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from wxy_hw.analysis.report import Claim, verdict_counts, write_report


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_counts_are_per_family():
    claims = [Claim("T1", "a", "s", "o", "reproduced", "c"), Claim("T1", "b", "s", "o", "inconclusive", "c"),
              Claim("T1", "c", "s", "o", "inconclusive", "c"),
              Claim("chips", "d", "s", "o", "refuted", "c", family="extension")]
    assert verdict_counts(claims) == ("the seed's claims: 1 reproduced, 2 inconclusive (of 3); "
                                      "extensions (not claimed by the seed): 1 refuted (of 1)")
    with pytest.raises(ValueError, match="family"):
        Claim("x", "y", "z", "w", "reproduced", "cmd", family="other")


def test_report_is_self_contained_and_complete(tmp_path):
    fig = tmp_path / "curve.png"
    plt.plot([0, 1], [1, 0])
    plt.savefig(fig)
    plt.close("all")
    claims = [Claim("Table 1", "SD beats the baseline at the deepest exit", "+1.1 (CIFAR-100, ResNet-18)",
                    "+0.13 ± 0.79 (3 seeds)", "inconclusive", "python experiments/compare_methods.py --seeds 0 1 2",
                    note="5 epochs <b>only</b>", figures=[fig]),
              Claim("SCAN", "acceleration at no accuracy drop", "2.17×", "1.9× at −0.1", "reproduced", "cmd")]
    html_path, md_path = write_report(tmp_path / "out", claims, title="Reproduction", preamble="budget smoke")
    page = html_path.read_text()
    parser = _Collect()
    parser.feed(page)
    imgs = [a for t, a in parser.tags if t == "img"]
    assert len(imgs) == 1 and imgs[0]["src"].startswith("data:image/png;base64,")
    assert not any(a.get("href") or (t == "script") for t, a in parser.tags)  # nothing external, no script
    assert "&lt;b&gt;only&lt;/b&gt;" in page  # text is escaped, never markup
    rows = [a for t, a in parser.tags if t == "tr"][1:]
    assert [r["class"] for r in rows] == ["inconclusive", "reproduced"]
    md = md_path.read_text()
    assert md.count("| **inconclusive** |") == 1 and md.count("| **reproduced** |") == 1 and "curve.png" in md
    assert "the seed's claims: 1 reproduced, 1 inconclusive (of 2)" in md and "Holm" in md
    with pytest.raises(ValueError, match="verdict must be one of"):
        Claim("x", "y", "z", "w", "maybe", "cmd")
