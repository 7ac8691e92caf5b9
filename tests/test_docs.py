"""The docs state what is true of the suite: docs/testing.md's test count is the number pytest collects."""
from __future__ import annotations

import re

import pytest

from helpers import ROOT


def test_testing_md_states_the_number_of_tests(request):
    stated = int(re.search(r"runs the whole suite \((\d+) tests", (ROOT / "docs" / "testing.md").read_text()).group(1))
    config = request.config
    whole = not config.getoption("keyword") and not config.getoption("markexpr") and \
        all(a.rstrip("/") in ("tests", str(ROOT / "tests"), str(ROOT)) for a in config.args)
    if not whole:
        pytest.skip("only a run of the whole suite knows its size")
    assert stated == len(request.session.items), \
        f"docs/testing.md says {stated} tests, the suite has {len(request.session.items)}: update it"
