"""Power planning: textbook sample sizes, the variance split by hand, and `reproduce.py --plan` on a pilot folder."""
from __future__ import annotations

import json
import math

import pytest

from wxy_hw.analysis.power import VarianceParts, power, sd_upper_bound, seeds_needed, split_variance
from wxy_hw.cli import reproduce
from wxy_hw.studies.reproduce_plan import claim_plans, plan_table


def test_paired_t_sample_sizes_match_the_textbook():
    # effect size d = 0.5 at two-sided 0.05 and 80 % power needs n = 34 (Cohen's tables, paired / one-sample t)
    assert seeds_needed(2.0, 1.0) == 34
    assert seeds_needed(1.0, 1.0) == 10  # d = 1: n = 10
    assert power(34, 2.0, 1.0) >= 0.8 > power(33, 2.0, 1.0)
    assert seeds_needed(0.01, 1.0) == 3  # never fewer than a verdict needs
    assert seeds_needed(1e4, 0.01) is None  # beyond reach
    assert power(1, 1.0, 1.0) == 0.0 and power(5, 0.0, 1.0) == 1.0


def test_tost_power_by_the_normal_approximation():
    # se = 1/√n; 2·Φ(margin/se − z_0.95) − 1 at n = 16, sd = 2, margin = 1: 2·Φ(2 − 1.6449) − 1
    from scipy.stats import norm
    assert power(16, 2.0, 1.0, kind="no drop") == pytest.approx(2 * norm.cdf(2 - norm.ppf(0.95)) - 1)


def test_variance_split_by_hand():
    # image part: (0.9·0.1 + 0.8·0.2)·100² = 2500 per image; chip part 30; observed 20 at 3 chips, 500 images
    parts = split_variance(20.0, 30.0, 3, 500, 90.0, 80.0)
    assert parts.image == pytest.approx(2500.0) and parts.chip == 30.0
    assert parts.train == pytest.approx(20.0 - 10.0 - 5.0)
    assert parts.at(30, 5000) == pytest.approx(5.0 + 1.0 + 0.5)
    assert split_variance(1.0, 30.0, 3, 500, 90.0, 80.0).train == 0.0  # never below 0
    # paired evaluation: seeds that spread less than the unpaired bound allows (2 < 2500 / 500) keep their own
    # spread at the pilot's evaluation, never the bound; the image part is what they show, shrinking with images
    paired = split_variance(2.0, 0.0, 1, 500, 90.0, 80.0)
    assert (paired.train, paired.image) == (0.0, pytest.approx(1000.0))
    assert paired.at(1, 500) == pytest.approx(2.0) and paired.at(1, 5000) == pytest.approx(0.2)
    assert VarianceParts(1.0, 0.0, 0.0).at(0, 0) == 1.0


def _pilot(tmp_path, differences, chips=1, images=10**8, family_size=1):
    claims = [{"section": "Self-distillation (Table 1)", "claim": "SD beats the baseline", "family": "seed",
               "details": {"differences": differences, "chips": chips, "images": images, "chip_var": 0.0,
                           "levels": None, "margin": {"value": 1.0, "unit": "points", "reason": "r"},
                           "kind": "direction", "family_size": family_size}},
              {"section": "Auxiliary Training", "claim": "untestable", "family": "seed", "details": {}}]
    (tmp_path / "claims.json").write_text(json.dumps(claims))
    (tmp_path / "steps.json").write_text(json.dumps({"methods": {"seconds": 600.0},
                                                     "early_exit/s0": {"seconds": 60.0},
                                                     "early_exit/s1": {"seconds": 60.0},
                                                     "early_exit/s2": {"seconds": 60.0}}))
    return tmp_path


def test_plan_reads_a_pilot(tmp_path, capsys):
    pilot = _pilot(tmp_path, [-1.0, 1.0, 3.0])  # s = 2: 34 seeds at a 1-point margin
    (plan,) = claim_plans(pilot, 25, 2000)
    assert plan.seeds_now == 34 and plan.seeds_larger == 34 and "s = 2.00 over 3 seeds" in plan.pilot
    # cautious: s at its upper 80 % limit from 3 seeds, 2 · √(2 / χ²₀.₂,₂) = 2 · √(2 / (−2 ln 0.8)) = 4.234
    assert plan.seeds_cautious == seeds_needed(2 * math.sqrt(2 / (-2 * math.log(0.8))), 1.0) > 34
    table = plan_table(pilot)
    assert f"| 34 | 34 | {plan.seeds_cautious} |" in table and "Deciding every Table-1 claim needs 34 seeds" in table
    # training 600 s + evaluation 180 s over 3 seeds, × 34 seeds (no chips: evaluation unscaled)
    assert f"{34 * 780 / 3 / 3600:.1f} CPU hours" in table
    assert reproduce.main(["--plan", str(pilot)]) == 0 and "| 34 | 34 |" in capsys.readouterr().out
    # Holm's first step over 21 claims: alpha / 21
    (strict,) = claim_plans(_pilot(tmp_path, [-1.0, 1.0, 3.0], family_size=21), 25, 2000)
    assert strict.seeds_now == seeds_needed(2.0, 1.0, 0.05 / 21) > 34


def test_plan_times_training_from_the_runs_counting_zoo_models_as_trained(tmp_path):
    from wxy_hw.studies.reproduce_plan import pilot_seconds

    pilot = _pilot(tmp_path, [-1.0, 1.0, 3.0])
    runs = {("baseline", 0): {"wall_time_s": 0.0, "adopted_from": {"zoo": "z"}},
            ("scan", 0): {"wall_time_s": 300.0}, ("scan", 1): {"wall_time_s": 500.0},
            # one of 2 cores for 1000 s (trained beside another run, --workers 2): 500 s of the machine
            ("scan", 2): {"wall_time_s": 1000.0, "torch_threads": 1, "host": {"cpu_count": 2}},
            ("ada", 0): {"wall_time_s": 3.5, "status": "interrupted"}}  # not finished: not counted
    for (method, seed), manifest in runs.items():
        (pilot / "methods" / method / f"s{seed}").mkdir(parents=True)
        (pilot / "methods" / method / f"s{seed}" / "manifest.json").write_text(
            json.dumps({"status": "complete", **manifest}))
    # 1300 s trained over 3 models, the adopted one counted at their mean (433.3 s); evaluation from steps.json
    assert pilot_seconds(pilot) == (pytest.approx(1300.0 * 4 / 3), 180.0, 3)
    assert "28.9 min training" in plan_table(pilot)


def test_plan_refuses_what_it_cannot_read(tmp_path, capsys):
    assert reproduce.main(["--plan", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    pilot = _pilot(tmp_path, [1.0])  # one seed: no spread to plan from
    assert reproduce.main(["--plan", str(pilot)]) == 2
    assert "--seeds 0 1 2" in capsys.readouterr().err
    assert math.isfinite(power(3, 1.0, 1.0))


def _converged_pilot(tmp_path, differences):
    pilot = _pilot(tmp_path, differences)
    (pilot / "config.toml").write_text('budget = "converged"\n')
    (pilot / "report.md").write_text("# the pilot's report\n")
    (pilot / "manifest.json").write_text(json.dumps({"tool": "wxy_hw", "kind": "reproduce", "status": "complete",
                                                     "outputs": ["claims.json", "steps.json", "config.toml",
                                                                 "report.md"]}))
    return pilot


def test_budget_decide_takes_the_seeds_the_pilot_says_table_1_needs(tmp_path, monkeypatch):
    from wxy_hw.studies.reproduce import BUDGETS, decide_budget

    pilot = _converged_pilot(tmp_path, [-1.0, 1.0, 3.0])  # s = 2 at a 1-point margin: 34 seeds
    budget = decide_budget(pilot)
    assert budget.seeds == tuple(range(34)) and (budget.chips, budget.samples) == (25, 2000)
    assert (budget.epochs, budget.subset, budget.stem_stride) == (BUDGETS["converged"].epochs, None, 2)
    assert "planned from the pilot" in budget.note
    seen = {}

    class Fake:  # the reproduction itself is hours: check what main hands it, and that the pilot's report stays
        def __init__(self, budget, out, **kw):
            seen["budget"], seen["out"] = budget, out
            self.claims = []

        def run(self):
            return tmp_path / "report.html", tmp_path / "report.md"

    monkeypatch.setattr(reproduce, "Reproduction", Fake)
    assert reproduce.main(["--budget", "decide", "--pilot", str(pilot), "--quiet"]) == 0
    assert len(seen["budget"].seeds) == 34 and seen["out"] == pilot  # extends the pilot: seeds 0-2 are reused
    assert (pilot / "pilot" / "report.md").read_text() == "# the pilot's report\n"


def test_budget_decide_from_a_table1_pilot_extends_it_as_one(tmp_path):
    from wxy_hw.studies.reproduce import decide_budget

    pilot = _converged_pilot(tmp_path, [-1.0, 1.0, 3.0])
    (pilot / "config.toml").write_text('budget = "table1"\n')
    budget = decide_budget(pilot)
    assert budget.scope == "table1" and len(budget.seeds) == 34 and "cut to Table 1" in budget.note


def test_budget_decide_refusals_are_one_line(tmp_path, capsys):
    pilot = _converged_pilot(tmp_path, [-1.0, 1.0, 3.0])
    for argv, match in ((["--budget", "decide"], "go together"),
                        (["--pilot", str(pilot)], "go together"),
                        (["--budget", "decide", "--pilot", str(pilot), "--seeds", "0", "1", "2"], "drop --seeds")):
        assert reproduce.main(argv) == 2
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1
    (pilot / "config.toml").write_text('budget = "small"\n')
    assert reproduce.main(["--budget", "decide", "--pilot", str(pilot)]) == 2
    assert "from a pilot that judged them" in capsys.readouterr().err
    (pilot / "config.toml").write_text('budget = "hardware"\n')  # converged, but it judges no Table-1 claim
    assert reproduce.main(["--budget", "decide", "--pilot", str(pilot)]) == 2
    assert "--budget table1" in capsys.readouterr().err
    (pilot / "config.toml").write_text('budget = "converged"\n')
    (pilot / "claims.json").write_text(json.dumps([]))
    assert reproduce.main(["--budget", "decide", "--pilot", str(pilot)]) == 2
    assert "no judged Table-1 claim" in capsys.readouterr().err


def test_budget_decide_replans_from_the_kept_pilot_and_keeps_its_seeds(tmp_path):
    from wxy_hw.studies.reproduce import decide_budget, keep_pilot_report

    pilot = _converged_pilot(tmp_path, [-1.0, 1.0, 3.0])
    (pilot / "config.toml").write_text('budget = "converged"\nseeds = [5, 6, 7]\n')
    first = decide_budget(pilot)
    assert first.seeds[:3] == (5, 6, 7) and len(first.seeds) == 34 and len(set(first.seeds)) == 34
    keep_pilot_report(pilot)
    # the decide run then writes its own, larger spread and config into the folder: the plan must not move
    (pilot / "claims.json").write_text(json.dumps([{"section": "Self-distillation (Table 1)", "claim": "c",
                                                    "family": "seed", "details": {
                                                        "differences": [0.0, 8.0, -8.0], "chips": 1, "images": 10**8,
                                                        "chip_var": 0.0, "levels": None, "kind": "direction",
                                                        "margin": {"value": 1.0, "unit": "points", "reason": "r"}}}]))
    (pilot / "config.toml").write_text('budget = "decide"\n')
    assert decide_budget(pilot).seeds == first.seeds
    assert (pilot / "pilot" / "steps.json").is_file()  # --plan RUN/pilot still reads the pilot's times


def test_the_upper_limit_of_a_spread_matches_the_chi_square_and_shrinks_with_seeds():
    # χ² with 2 degrees of freedom: P(X ≤ x) = 1 − e^(−x/2), so its 20 % point is −2 ln 0.8 (by hand)
    assert sd_upper_bound(1.0, 3) == pytest.approx(math.sqrt(2 / (-2 * math.log(0.8))), rel=1e-9)
    factors = [sd_upper_bound(1.0, n) for n in (2, 3, 5, 10, 100)]
    assert all(a > b > 1 for a, b in zip(factors, factors[1:]))  # more seeds: a surer spread, a smaller margin
    assert math.isnan(sd_upper_bound(1.0, 1)) and sd_upper_bound(0.0, 5) == 0.0
    with pytest.raises(ValueError, match="confidence"):
        sd_upper_bound(1.0, 3, confidence=1.0)



def test_plan_counts_an_adopted_models_own_training_time(tmp_path):
    """A model adopted from the zoo or an earlier run that carries the seconds its training took counts them; one
    without counts at the mean of those with a time (so a pilot whose every model was adopted still says what
    training them takes)."""
    from wxy_hw.studies.reproduce_plan import pilot_seconds

    pilot = _pilot(tmp_path, [-1.0, 1.0, 3.0])
    runs = {("kd", 0): {"adopted_from": {"zoo": "z", "train_seconds": 900.0}},
            ("kd", 1): {"adopted_from": {"run": "r", "train_seconds": 300.0}},
            ("kd", 2): {"adopted_from": {"zoo": "old"}}}  # shelved before times were recorded: the mean, 600 s
    for (method, seed), manifest in runs.items():
        (pilot / "methods" / method / f"s{seed}").mkdir(parents=True)
        (pilot / "methods" / method / f"s{seed}" / "manifest.json").write_text(
            json.dumps({"status": "complete", "wall_time_s": 2.0, **manifest}))
    assert pilot_seconds(pilot)[0] == pytest.approx(1800.0)
