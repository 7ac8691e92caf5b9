"""experiments/reproduce.py at the smoke budget: every step runs, every claim gets a verdict, the HTML stands alone."""
from __future__ import annotations

import base64
import dataclasses
import importlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from wxy_hw.analysis.report import VERDICTS
from wxy_hw.cli import USER_ERRORS, config_of, parse, reproduce
from wxy_hw.studies import reproduce as reproduce_mod
from wxy_hw.studies.reproduce import BUDGETS, Reproduction, _series


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



def _in_folder(argv, folder):
    """A step's command line as run from ``folder``: its --out and --checkpoints joined to it."""
    out, inside = [], False
    for arg in argv:
        if arg.startswith("--"):
            inside = arg in ("--out", "--checkpoints", "--init-from")
            out.append(arg)
        else:
            out.append(str(folder / arg) if inside else arg)
    return out


@pytest.mark.parametrize("budget", ["smoke", "small", "converged", "table1", "hardware", "full"])
def test_each_step_runs_the_config_its_command_line_reads(tmp_path, budget):
    """A step runs its study's library runner on a config; the command recorded for it (steps.json, commands.sh)
    parses, through that study's own command line, into the same config, --out and --quiet."""
    rep = Reproduction(BUDGETS[budget], tmp_path / "rep", torch_device="cpu", data_dir=tmp_path / "data")
    steps = rep.plan.steps()
    b = BUDGETS[budget]
    # a budget cut to Table 1: its trainings, then one corruption study per seed
    # a budget cut to the on-chip claims: its trainings (digital, then hwa per device), then one sweep per device
    expected = {"table1": 1 + len(b.seeds), "hardware": 1 + len(b.devices) + len(b.seeds) * len(b.devices)}
    assert len(steps) == expected.get(b.scope, 1 + len(b.devices) + len(b.seeds) * (4 + len(b.devices)))
    assert len({s.key for s in steps}) == len(steps)
    for step in steps:
        assert step.study in reproduce_mod.RUNNERS
        cls = type(step.config)
        args = parse(importlib.import_module(f"wxy_hw.cli.{step.study}").build_parser(),
                     _in_folder(step.argv, rep.out), cls)
        assert config_of(cls, args) == step.config, step.key
        assert config_of(cls, args).to_toml() == step.config.to_toml(), step.key  # types too (1 vs 1.0)
        assert args.out == rep.out / step.run_dir and args.progress is False
        assert step.command.startswith(f"wxy-hw {step.study} ") and str(tmp_path / "rep") not in step.command


def test_step_records_stay_those_of_earlier_reproductions(tmp_path):
    """steps.json records each step's command line: it must not change, or every finished step would rerun."""
    data = str(Path("/tmp/somedata").resolve())  # recorded absolute, so that commands.sh finds the data
    plan = Reproduction(BUDGETS["smoke"], tmp_path, torch_device="cpu", data_dir="/tmp/somedata").plan
    train = ["--dataset", "synthetic", "--data-dir", data, "--arch", "resnet8", "--width", "0.25",
             "--epochs", "1", "--torch-device", "cpu"]
    assert list(plan.methods.argv) == [
        "--methods", "baseline", "self_distillation", "dsn", "kd", "fitnet", "at", "dml", "scan", "augment", "ada",
        "auxiliary", "auxiliary_adv", "adv", "--seeds", "0", "1", "--teacher-arch", "resnet8", "--teacher-width", "0.5", *train,
        "--out", "methods", "--quiet"]
    # hardware-aware models: fine-tuned from the methods step's digital ones, as the zoo's are (1 epoch: the budget's)
    assert list(plan.hwa["reram"].argv) == [
        "--methods", "hwa", "self_distillation+hwa", "--seeds", "0", "1", "--method-arg", "device=reram",
        "--method-arg", "self_distillation+hwa.noise_scale=0.5", "--init-from", "methods", *train[:-2], "--lr", "0.01",
        *train[-2:], "--out", "methods_reram", "--quiet"]
    assert list(plan.sweep["reram", 0].argv) == [
        "--device", "reram", "--checkpoints", "methods/baseline/s0/best.pt", "methods/self_distillation/s0/best.pt",
        "methods_reram/hwa/s0/best.pt", "methods_reram/self_distillation+hwa/s0/best.pt", "--scales", "1", "--times",
        "86400", "--chips", "2", "--samples", "100", "--headline-chips", "2", "--headline-samples", "100",
        "--bn-recalibrate", "16", "--seed", "0", "--torch-device", "cpu",
        "--sigmas", "0.0", "0.08", "--dataset", "synthetic", "--data-dir", data, "--out",
        "noise_sweep/reram/s0", "--quiet"]
    assert list(plan.chipcal[1].argv) == [
        "--source", "synthetic", "--target", "none", "--device", "reram", "--checkpoints", "methods/baseline/s1/best.pt",
        "--chips", "2", "--epochs", "1", "--samples", "200", "--seed", "1", "--torch-device", "cpu", "--data-dir",
        data, "--out", "calibrator_chips/s1", "--quiet"]


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(rows[0])
    path.write_text(",".join(keys) + "\n" + "".join(",".join(str(r[k]) for k in keys) + "\n" for r in rows))


def test_a_table1_budget_trains_and_judges_only_the_seeds_table_1(tmp_path):
    """--budget table1: the converged recipe, only the models and the corruption study of the seed's Table-1
    claims (no teacher, no hardware, no PGD), and only those claims in the report, each judged over its seeds."""
    b = BUDGETS["table1"]
    assert (b.epochs, b.subset, b.stem_stride, b.scope) == (BUDGETS["converged"].epochs, None, 2, "table1")
    rep = Reproduction(b, tmp_path, torch_device="cpu")
    argv = list(rep.plan.methods.argv)
    assert argv[:argv.index("--seeds")] == ["--methods", "baseline", "self_distillation", "scan", "augment", "ada"]
    assert "--teacher-arch" not in argv and not rep.plan.hwa and not rep.plan.sweep and not rep.plan.early
    robust = list(rep.plan.robust[1].argv)
    assert robust[1:4] == ["methods/baseline/s1/best.pt", "methods/augment/s1/best.pt", "methods/ada/s1/best.pt"]
    assert robust[robust.index("--adv-samples") + 1] == "0"
    comparison, corruption, errors = [], {}, {}
    for s in b.seeds:
        for m, acc in (("baseline", 90.0), ("self_distillation", 91.0), ("scan", 90.5), ("augment", 90.2),
                       ("ada", 89.0)):
            exits = ["1", "2", "3", "4", "ensemble"] if m in ("self_distillation", "scan") else ["4"]
            jitter = 0.1 * s * s if m == "ada" else 0.0  # differences that vary from seed to seed
            comparison += [dict(method=m, seed=s, exit=e, accuracy=acc + 0.1 * s + jitter - (3 if e == "1" else 0))
                           for e in exits]
        corruption[s] = [dict(method=m, exit="4", corruption=c, severity=3, accuracy=a + s, device="")
                         for m, a in (("baseline", 60.0), ("augment", 70.0), ("ada", 71.0))
                         for c in ("clean", "gaussian_noise", "shot_noise")]
        errors[s] = [dict(method=m, corruption="mean", ce=100.0) for m in ("baseline", "augment", "ada")]
        _write_csv(tmp_path / "robustness" / f"s{s}" / "corruption.csv", corruption[s])
        _write_csv(tmp_path / "robustness" / f"s{s}" / "corruption_errors.csv", errors[s])
    _write_csv(tmp_path / "methods" / "comparison.csv", comparison)
    rep.collect()
    sections = [c.section for c in rep.claims]
    assert sections == ["Self-distillation (Table 1)"] * 3 + ["SCAN (Table 1)"] * 2 + \
        ["ADA (Table 1, CIFAR-100-C)"] * 2 + ["ADA (extension: corruptions never trained on)"] * 2 + \
        ["ADA (Table 3, clean images)"]
    unseen = [c for c in rep.claims if "never trained on" in c.section]  # shot noise only: gaussian noise is trained on
    assert all(c.family == "extension" and "(shot_noise)" in c.claim for c in unseen)
    assert "ADA 72.00 [" in unseen[0].ours and "augmentation 71.00 [" in unseen[0].ours  # 71 + s, 70 + s
    clean = rep.claims[-1]  # ADA against augmentation on the whole test set: 1.2, 1.1 and 0.8 points below
    assert clean.verdict == "refuted" and clean.details["differences"] == pytest.approx([-1.2, -1.1, -0.8])
    assert clean.details["images"] == 10000
    assert all(c.family == ("extension" if "extension" in c.section else "seed") and c.verdict != "not judged"
               for c in rep.claims)
    assert "Table-1 claims only" in rep._preamble() and "no chips" in rep._preamble()


@pytest.mark.parametrize("devices", [None, ["subthreshold_cmos"]])
def test_a_hardware_budget_trains_nothing_new_and_judges_only_the_on_chip_claims(tmp_path, devices):
    """--budget hardware: the converged recipe's baseline and self_distillation and their hwa fine-tunes per device
    (the zoo's models, adopted), one headline sweep per device and seed, and only the flat-minima and on-chip claims
    (retention and level), each judged over seeds with chips nested; cut by --devices to one device, the same for
    it alone (flat minima from its own sweep)."""
    b = reproduce_mod.with_devices(BUDGETS["hardware"], devices)
    assert (b.epochs, b.subset, b.stem_stride, b.chips, b.samples) == (15, None, 2, 25, 2000)
    rep = Reproduction(b, tmp_path, torch_device="cpu")
    argv = list(rep.plan.methods.argv)
    assert argv[:argv.index("--seeds")] == ["--methods", "baseline", "self_distillation"]
    assert set(rep.plan.hwa) == set(b.devices) and not rep.plan.robust and not rep.plan.early
    assert [k for k, step in rep.plan.sweep.items() if "--no-flat" not in step.argv] == [(b.devices[0], 0),
                                                                                          (b.devices[0], 1),
                                                                                          (b.devices[0], 2)]
    levels = {"baseline": 60.0, "self_distillation": 55.0, "hwa": 80.0, "self_distillation+hwa": 75.0,
              "baseline + BN recal": 85.0}
    for dev in b.devices:
        for s in b.seeds:
            rows = [dict(method=m, exit=e, chip=1000 * s + c, digital=92.0 + s,  # a chip's id carries its seed
                         accuracy=a + s + c - (5 if e == "1" else 0) + (0.3 * s if m == "self_distillation" else 0))
                    for m, a in levels.items() for e in ("1", "4") for c in range(3)]
            _write_csv(tmp_path / "noise_sweep" / dev / f"s{s}" / "headline.csv", rows)
            flat = [dict(images=i, method=m, exit="4", sigma=x, accuracy_mean=92.0 - x * (50 if m == "baseline" else 40) - s)
                    for i in ("trained", "held out") for m in ("baseline", "self_distillation") for x in b.sigmas]
            _write_csv(tmp_path / "noise_sweep" / dev / f"s{s}" / "flat_minima.csv", flat)
    rep.collect()
    sections = [c.section for c in rep.claims]
    assert sections == ["Flat minima", "Flat minima (extension)"] + [f"On {d} chips (extension)" for d in b.devices
                                                                   for _ in range(5)]
    assert all(c.verdict != "not judged" for c in rep.claims)
    assert [c.family for c in rep.claims].count("seed") == 1
    retention = rep.claims[2]  # SD keeps 55 − 92 against the baseline's 60 − 92 on the same images: 5 points less
    assert "retention" in retention.claim and retention.verdict == "refuted"
    assert retention.details["chips"] == 3 and retention.details["differences"] == pytest.approx([-5.0, -4.7, -4.4])
    assert "(3 seeds × 3 chips)" in retention.ours  # chips per seed, not the 9 distinct chip ids
    assert "on-chip claims only" in rep._preamble() and "hwa" in rep._preamble() and "25 chips" in rep._preamble()


def test_a_step_fails_as_its_command_would():
    """The errors a step reports in one line are those its command line reports in one line."""
    assert set(reproduce_mod.STEP_ERRORS) == set(USER_ERRORS)

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
    assert len(page.rows) == len(claims)
    assert all(r[4].startswith(c["verdict"]) for r, c in zip(page.rows, claims))  # the verdict, then why
    assert all(c["verdict"] in VERDICTS and c["ours"] and c["seed_value"] and c["command"] and c["reason"]
               for c in claims)
    # the seed's own 29 claims (two of them not testable here) apart from our extensions; two seeds judge nothing
    assert sum(c["family"] == "seed" for c in claims) == 29
    assert {c["verdict"] for c in claims} == {"not judged"}
    judged = [c for c in claims if c["details"]]
    assert judged and all(len(c["details"]["differences"]) == 2 and c["details"]["margin"]["reason"] for c in judged)
    sections = {c["section"] for c in claims}
    for part in ("Table 1", "Table 2", "Table 3", "SCAN dynamic", "SCAN acceleration", "ADA (Table 3", "Auxiliary",
                 "Calibrator", "Flat minima",
                 "reram chips"):
        assert any(part in s for s in sections), part
    md = (out / "report.md").read_text()
    assert md.count("| **") == len(claims)
    # clean accuracies come from the whole test set of the trainings, corrupted ones from the robustness study
    clean = next(c for c in claims if c["claim"] == "auxiliary training raises clean accuracy over the baseline")
    assert "compare_methods" in clean["command"] and clean["details"]["images"] == 10000
    pgd = next(c for c in claims if c["claim"] == "auxiliary training beats adversarial training under PGD-L∞")
    assert re.search(r"clean test accuracy here: auxiliary_adv \d+\.\d\d %, adv \d+\.\d\d %, baseline", pgd["note"])
    table2 = [c for c in claims if "Table 2" in c["section"] and c["details"]]
    assert table2 and all(re.search(r"our teacher: resnet8 width 0.5, test \d+\.\d\d % \(mean of 2 seeds; the "
                                    r"student baseline \d+\.\d\d %\)", c["note"]) for c in table2)
    commands = (out / "commands.sh").read_text()
    assert all(c["command"] in commands for c in claims)
    # a second run reuses every finished step and gives the same report
    before = (out / "report.md").read_text()
    assert reproduce.main(["--budget", "smoke", "--out", str(out), "--quiet"]) == 0
    assert (out / "report.md").read_text() == before


def test_a_claim_that_also_needs_an_acceleration_above_one(tmp_path):
    """SCAN's claim: no drop (TOST) *and* an acceleration above 1×; below 1× refutes it whatever the accuracy."""
    from wxy_hw.analysis.stats import ratio_interval
    from wxy_hw.studies.reproduce import Basis, NO_DROP_MARGIN

    rep = Reproduction(BUDGETS["smoke"], tmp_path / "rep", torch_device="cpu")
    same = {(s, 0): 90.0 + 0.1 * s for s in range(4)}
    close = {(s, 0): 90.0 + 0.1 * s + (0.05 if s % 2 else -0.05) for s in range(4)}
    verdicts = {}
    for name, accel in (("fast", [2.0, 2.2, 1.9, 2.1]), ("unsure", [0.8, 1.6, 1.1, 1.3]), ("slow", [0.5, 0.6, 0.55, 0.5])):
        rep.claims, rep.claims_with_tests, rep._pending, rep._untestable = [], [], [], []
        rep.add_difference("SCAN dynamic inference", name, "4.41×", close, same, ("a", "b"), "cmd",
                           basis=Basis(NO_DROP_MARGIN, 1000), kind="no drop",
                           above=("MAC acceleration", ratio_interval(accel), 1.0))
        rep.judge_claims()
        verdicts[name] = rep.claims[0].verdict
    assert verdicts == {"fast": "reproduced", "unsure": "inconclusive", "slow": "refuted"}


def test_devices_cut_a_hardware_reproduction_to_one_device_in_its_own_folder(tmp_path, monkeypatch, capsys):
    """--devices subthreshold_cmos: the on-chip claims of that device alone (its fine-tunes and sweeps, nothing of
    the others), in runs/reproduce/hardware_subthreshold_cmos so the report over every device stays; a device not of
    the hardware budget, or --devices with another budget, is refused in one line."""
    cut = reproduce_mod.with_devices(BUDGETS["hardware"], ["subthreshold_cmos"])
    assert cut.devices == ("subthreshold_cmos",) and cut.seeds == BUDGETS["hardware"].seeds
    assert reproduce_mod.with_devices(BUDGETS["hardware"], ["subthreshold_cmos", "reram"]).devices == \
        ("reram", "subthreshold_cmos")  # the budget's order: the same first device (flat minima) either way
    rep = Reproduction(cut, tmp_path / "rep", torch_device="cpu")
    assert set(rep.plan.hwa) == {"subthreshold_cmos"} and {d for d, _ in rep.plan.sweep} == {"subthreshold_cmos"}
    assert reproduce_mod.with_devices(BUDGETS["hardware"], None) is BUDGETS["hardware"]

    seen = {}

    class Stop(Exception):
        pass

    def record(budget, out, **kwargs):
        seen.update(budget=budget, out=out)
        raise Stop

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(reproduce, "Reproduction", record)
    with pytest.raises(Stop):
        reproduce.main(["--budget", "hardware", "--devices", "subthreshold_cmos", "--seeds", "0", "1", "2", "3"])
    assert seen["budget"].devices == ("subthreshold_cmos",) and seen["budget"].seeds == (0, 1, 2, 3)
    assert seen["out"] == Path("runs") / "reproduce" / "hardware_subthreshold_cmos"
    for argv, words in ((["--budget", "hardware", "--devices", "ideal"], "not a device of --budget hardware: ideal"),
                        (["--budget", "table1", "--devices", "reram"], "drop --devices"),
                        (["--budget", "small", "--devices", "reram"], "--budget small tests other claims too")):
        assert reproduce.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1


def test_workers_reach_the_training_steps_only(tmp_path):
    """--workers 2: the training steps train their runs side by side (compare_methods --workers 2, its command line
    parsing to that config); the sweeps' recorded commands stay those of a run without it (they are reused by it)."""
    rep = Reproduction(BUDGETS["hardware"], tmp_path, torch_device="cpu", workers=2)
    plain = Reproduction(BUDGETS["hardware"], tmp_path, torch_device="cpu")
    for step in (rep.plan.methods, rep.plan.hwa["pcm"]):
        argv = list(step.argv)
        assert argv[argv.index("--workers") + 1] == "2" and step.config.workers == 2
        args = parse(importlib.import_module("wxy_hw.cli.compare_methods").build_parser(), _in_folder(argv, tmp_path),
                     type(step.config))
        assert config_of(type(step.config), args) == step.config
    assert rep.plan.sweep["reram", 0].argv == plain.plan.sweep["reram", 0].argv


def test_reuse_hands_each_training_step_the_same_step_of_an_earlier_reproduction(tmp_path):
    """--reuse RUN: each training step gets RUN's folder of the same step (compare_methods --reuse, absolute, its
    command line parsing to that config) where RUN has one; the other steps' commands are unchanged."""
    earlier = tmp_path / "earlier"
    (earlier / "methods" / "baseline" / "s0").mkdir(parents=True)  # a reproduction that trained no reram models
    (earlier / "methods" / "baseline" / "s0" / "best.pt").write_bytes(b"")
    rep = Reproduction(BUDGETS["hardware"], tmp_path / "rep", torch_device="cpu", reuse=[earlier, tmp_path / "rep"])
    plain = Reproduction(BUDGETS["hardware"], tmp_path / "rep", torch_device="cpu")
    methods = rep.plan.methods
    assert methods.config.reuse == [str(earlier.resolve() / "methods")]
    args = parse(importlib.import_module("wxy_hw.cli.compare_methods").build_parser(),
                 _in_folder(methods.argv, tmp_path / "rep"), type(methods.config))
    assert config_of(type(methods.config), args) == methods.config
    assert rep.plan.hwa["reram"].config.reuse is None and "--reuse" not in rep.plan.hwa["reram"].argv
    assert rep.plan.sweep["reram", 0].argv == plain.plan.sweep["reram", 0].argv
    with pytest.raises(ValueError, match="no such folder"):
        Reproduction(BUDGETS["hardware"], tmp_path / "rep", torch_device="cpu", reuse=[tmp_path / "none"])


def test_the_report_says_where_its_models_came_from(tmp_path):
    """The preamble counts the models trained here, the zoo's and those adopted from earlier runs (--reuse), by
    each finished run's manifest; unfinished runs are not counted."""
    import json

    runs = {"methods/baseline/s0": {"zoo": "z", "sha256": "0"}, "methods/scan/s0": {"run": "/old/methods/scan/s0"},
            "methods_reram/hwa/s0": {"run": "/old/methods_reram/hwa/s0"}, "methods/kd/s0": None,
            "methods/dsn/s0": None}
    for run, source in runs.items():
        (tmp_path / run).mkdir(parents=True)
        manifest = {"status": "running" if run.endswith("dsn/s0") else "complete"}
        if source:
            manifest["adopted_from"] = source
        (tmp_path / run / "manifest.json").write_text(json.dumps(manifest))
    said = Reproduction(BUDGETS["smoke"], tmp_path, torch_device="cpu")._provenance()
    assert said == (" Of its 4 models, 1 trained here; 1 the zoo's; 2 adopted from earlier runs in /old/methods, "
                    "/old/methods_reram (those not trained here were trained with exactly these settings: evaluated, "
                    "not retrained; each run's manifest names its source).")
    assert Reproduction(BUDGETS["smoke"], tmp_path / "none", torch_device="cpu")._provenance() == ""
    # a run set aside (s0.damaged) is not counted, even where its manifest reads back or does not
    (tmp_path / "methods" / "kd" / "s0").rename(tmp_path / "methods" / "kd" / "s0.damaged")
    (tmp_path / "methods" / "scan" / "s0" / "manifest.json").write_text("{")
    for run in ("methods/scan/s0", "methods_reram/hwa/s0"):
        (tmp_path / run).rename(tmp_path / f"{run}.damaged")
    (tmp_path / "methods" / "at" / "s1").mkdir(parents=True)
    (tmp_path / "methods" / "at" / "s1" / "manifest.json").write_text(json.dumps({"status": "complete"}))
    said = Reproduction(BUDGETS["smoke"], tmp_path, torch_device="cpu")._provenance()
    assert said == " Of its 2 models, 1 trained here; 1 the zoo's (those not trained here were trained with exactly " \
        "these settings: evaluated, not retrained; each run's manifest names its source)."
    (tmp_path / "methods" / "baseline" / "s0").rename(tmp_path / "methods" / "baseline" / "s0.damaged")
    assert Reproduction(BUDGETS["smoke"], tmp_path, torch_device="cpu")._provenance() == " Of its 1 model, 1 " \
        "trained here."


def test_calibrator_claims_count_the_test_images_each_step_recorded(tmp_path):
    """A calibrator claim's images are those its steps evaluated (the fewest over seeds): the digits test split
    holds fewer than the 5,000 the converged budget asks, and a chip is tested on at most CHIP_IMAGES; a step run
    before the counts were recorded falls back to the count asked."""
    from wxy_hw.studies.calibrator_adapt import CHIP_IMAGES

    b = BUDGETS["converged"]
    rep = Reproduction(b, tmp_path, torch_device="cpu")
    for s in b.seeds:
        domain = [{"method": m, "target acc": a + s, "source acc": 98.0 - (m[0] == "D") - 0.1 * s}
                  for m, a in (("source only", 60.0), ("calibrator (classifier frozen)", 70.0),
                               ("DANN (fine-tuned features)", 68.0))]
        _write_csv(tmp_path / "calibrator_domain" / f"s{s}" / "domain.csv", domain)
        _write_csv(tmp_path / "calibrator_chips" / f"s{s}" / "chips.csv",
                   [{"chip": 1000 * s + c, "no calibration": 50.0 + c, "calibrator": 75.0 + c + s,
                     "BN recalibration": 80.0 + c} for c in range(3)])
        (tmp_path / "calibrator_domain" / f"s{s}" / "manifest.json").write_text(json.dumps(
            {"results": {"domain_images": {"target test": 360 - s, "source test": 500}}}))
        (tmp_path / "calibrator_chips" / f"s{s}" / "manifest.json").write_text(json.dumps(
            {"results": {"chip_images": {"test": CHIP_IMAGES, "train": CHIP_IMAGES}}}))
    rep.claims_with_tests, rep._pending, rep._untestable = [], [], []
    rep._calibrator()
    images = [extra["images"] for _, _, _, extra in rep._pending]
    assert images == [358, 358, 500, CHIP_IMAGES, CHIP_IMAGES]  # the third: source-domain accuracy
    for s in b.seeds:  # steps run before the counts were recorded
        for study in ("calibrator_domain", "calibrator_chips"):
            (tmp_path / study / f"s{s}" / "manifest.json").write_text(json.dumps({"results": {}}))
    rep.claims_with_tests, rep._pending, rep._untestable = [], [], []
    rep._calibrator()
    assert [extra["images"] for _, _, _, extra in rep._pending] == [b.calibrator_samples] * 3 + [CHIP_IMAGES] * 2


def test_a_tie_says_when_the_seeds_own_effect_is_inside_the_margin_too(tmp_path):
    """"no effect" against a seed effect smaller than the margin is what the seed's own numbers would give: the
    reason says so; against a larger seed effect it does not."""
    from wxy_hw.studies.reproduce import METHOD_MARGIN, Basis, stated_effect

    assert stated_effect("ResNet18 CIFAR-100: 78.64 vs 78.38 (+0.26)") == pytest.approx(0.26)
    assert stated_effect("67.85 vs 77.09 (−9.24)") == pytest.approx(-9.24)
    assert stated_effect("CE 69.34 vs 92.21 (AlexNet = 100)") is None
    assert stated_effect("(+1e-3)") is stated_effect("(+1,234.5)") is stated_effect("(+12.5e3)") is None  # not read as 1
    rep = Reproduction(BUDGETS["smoke"], tmp_path / "rep", torch_device="cpu")
    rep.claims_with_tests, rep._pending, rep._untestable = [], [], []
    a = {(s, 0): 92.0 + 0.1 * s for s in range(5)}
    b = {(s, 0): 92.0 + 0.1 * s + (0.05 if s % 2 else -0.04) for s in range(5)}
    for seed_value in ("78.64 vs 78.38 (+0.26)", "78.64 vs 77.09 (+1.55)"):
        rep.add_difference("Table 3", "A beats B", seed_value, a, b, ("A", "B"), "cmd", basis=Basis(METHOD_MARGIN, 10000))
    rep.judge_claims()
    small, large = rep.claims
    assert small.verdict == large.verdict == "no effect"
    assert "the seed's own effect, +0.26, lies inside the margin too" in small.reason
    assert "seed's own effect" not in large.reason and small.details["seed_effect"] == pytest.approx(0.26)


def test_a_training_step_says_first_how_many_of_its_models_are_trained_already(tmp_path, monkeypatch):
    """Before hours of training, one line: how many of the step's models need none, how many it will train, and the
    command that trains them onto the zoo's shelf; a step that cannot be planned yet says nothing (it fails itself)."""
    monkeypatch.setenv("WXY_ZOO", str(tmp_path / "empty_zoo"))
    said: list[str] = []
    rep = Reproduction(BUDGETS["converged"], tmp_path / "rep", torch_device="cpu", log=said.append)
    rep._say_trained_already(rep.plan.methods)
    assert said == ["[reproduce] methods: 0 of 42 models are trained already (finished there, in the zoo or in "
                    "--reuse folders), 42 to train (scripts/train_zoo.sh --reproduce converged trains them onto the "
                    "zoo's shelf, each kept as it finishes)"]
    rep._say_trained_already(rep.plan.hwa["reram"])  # its starting models are not trained yet
    assert len(said) == 1
    # other seeds: the command names them; a budget train_zoo does not know (decide): no command
    rep = Reproduction(dataclasses.replace(BUDGETS["converged"], seeds=(0, 1, 2, 3)), tmp_path / "rep4",
                       torch_device="cpu", log=said.append)
    rep._say_trained_already(rep.plan.methods)
    assert said[-1].endswith("(scripts/train_zoo.sh --reproduce converged --seeds 0 1 2 3 trains them onto the zoo's "
                             "shelf, each kept as it finishes)")
    rep = Reproduction(dataclasses.replace(BUDGETS["converged"], name="decide"), tmp_path / "rep5",
                       torch_device="cpu", log=said.append)
    rep._say_trained_already(rep.plan.methods)
    assert said[-1].endswith("42 to train")
