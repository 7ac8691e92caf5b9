"""Every table in docs/results.md points to its archived run (results/<name>/ or validation/results/<name>/), and
scripts/archive_run.py archives a run's small files with the commit it was run at."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from helpers import script

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE = re.compile(r"\((?:\.\./)?((?:validation/)?results/[\w.-]+)/?\)")

# Sections whose tables were measured before runs were archived: each names why it is not archived yet. The list
# only shrinks: a new section with a table must link its archive.
NOT_YET_ARCHIVED = {
    "On simulated hardware (issue 3)": "the earlier default models (3 epochs on 10,000 images), superseded by the "
    "zoo's: the main job on every device (issue 25) is archived",
    "Self-distillation and its baselines on Fashion-MNIST (issue 2)": "measured before archiving, one seed; "
    "superseded by the converged models of the seed's other claims (issue 25), which are archived",
    "Over three seeds on a GPU: Table 3 and the seed's Table 2 columns (issue 17)": "a GPU run (no GPU lent since); "
    "superseded on the CPU by the converged models of the seed's other claims (issue 25), which are archived",
    "Benchmarks (`python benchmarks/run.py`)": "timings of one machine, each with its command",
}


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_every_results_table_names_an_existing_archive():
    docs = sections((ROOT / "docs" / "results.md").read_text())
    with_tables = {name for name, body in docs.items() if re.search(r"^\|.*\|\s*$", body, flags=re.M)}
    assert with_tables, "docs/results.md has no tables?"
    for name in sorted(with_tables):
        links = ARCHIVE.findall(docs[name])
        if name in NOT_YET_ARCHIVED:
            continue
        assert links, f"docs/results.md section {name!r} has a table but links no results/<run>/ archive"
        for link in links:
            folder = ROOT / link
            assert folder.is_dir(), f"{name!r} links {link}, which does not exist"
            assert (folder / "commit.txt").is_file() or link.startswith("validation/"), f"{link} has no commit.txt"
    assert set(NOT_YET_ARCHIVED) <= with_tables, "a section in NOT_YET_ARCHIVED no longer exists or has no table"




def test_every_claims_table_in_the_docs_is_its_archive_s(tmp_path):
    """A verdict table in docs/results.md is what scripts/claims_table.py prints from one archive its section links
    (all its claims, or one family's): row for row and in order, so no number, verdict or claim in the docs drifts
    from the claims.json behind it."""
    claims_table = script("scripts/claims_table.py")
    docs = sections((ROOT / "docs" / "results.md").read_text())
    checked = 0
    for name, body in docs.items():
        for table in body.split(claims_table.HEADER[0])[1:]:
            lines = table.splitlines()[2:]
            rows = lines[:next((i for i, line in enumerate(lines) if not line.startswith("| ")), len(lines))]
            archives = [ROOT / link for link in ARCHIVE.findall(body) if (ROOT / link / "claims.json").is_file()]
            assert archives, f"{name!r} shows verdicts but links no archive with a claims.json"
            printed = [claims_table.claims_table(run, family)[2:] for run in archives for family in (None, "seed",
                                                                                                    "extension")]
            assert rows in printed, (f"{name!r}: its verdict table is not what python scripts/claims_table.py prints "
                                     f"from {', '.join(p.name for p in archives)} (first row: {rows[0][:100]})")
            checked += 1
    assert checked >= 2
    with pytest.raises(ValueError, match="does not exist"):
        claims_table.claims_table(tmp_path)


def test_archive_copies_small_files_and_the_commit(tmp_path):
    archive_run = script("scripts/archive_run.py")
    run = tmp_path / "run"
    (run / "noise_sweep" / "reram" / "s0").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"tool": "wxy_hw", "git": {"commit": "abc123", "dirty": True},
                                                   "command": ["noise_sweep.py", "--device", "reram", "--out", "a b"]}))
    (run / "report.md").write_text("# report\n")
    (run / "noise_sweep" / "reram" / "s0" / "sweep.csv").write_text("a,b\n1,2\n")
    (run / "methods").mkdir()
    (run / "methods" / "best.pt").write_bytes(b"\0" * 10)  # a checkpoint: never archived
    (run / "big.csv").write_bytes(b"x" * (archive_run.MAX_BYTES + 1))  # too large
    target = archive_run.archive(run, "demo", results=tmp_path / "results")
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert files == ["commands.sh", "commit.txt", "manifest.json", "noise_sweep/reram/s0/sweep.csv", "report.md"]
    # a run without its own commands.sh: the command its manifest recorded, as run from the repository
    assert (target / "commands.sh").read_text().splitlines()[-1] == \
        "python experiments/noise_sweep.py --device reram --out 'a b'"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    run_line, archived = (target / "commit.txt").read_text().splitlines()
    assert run_line == "run: abc123 (with uncommitted changes)" and archived.startswith(f"archived at: {head}")
    (run / "report.md").write_text("# report, rerun\n")  # a second archive replaces the first whole
    (run / "noise_sweep" / "reram" / "s0" / "sweep.csv").unlink()
    target = archive_run.archive(run, "demo", results=tmp_path / "results")
    assert not (target / "noise_sweep").exists() and "rerun" in (target / "report.md").read_text()
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["demo"]
    with pytest.raises(SystemExit, match="not a finished run"):
        archive_run.archive(tmp_path, "x", results=tmp_path / "results")
    with pytest.raises(SystemExit, match="one plain folder name"):
        archive_run.archive(run, "../x", results=tmp_path / "results")
    mine = tmp_path / "results" / "paper_figures"  # a folder of the user's under results/: never replaced
    mine.mkdir()
    (mine / "fig3.csv").write_text("1\n")
    with pytest.raises(SystemExit, match="is not an archive this script wrote"):
        archive_run.archive(run, "paper_figures", results=tmp_path / "results")
    assert [p.name for p in mine.iterdir()] == ["fig3.csv"]
