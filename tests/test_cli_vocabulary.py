"""Every CLI speaks one vocabulary: --help shows defaults, shared flags, --config round trip, logs without \\r."""
from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from wxy_hw.cli.__main__ import COMMANDS
from wxy_hw.studies.train import train_run

ROOT = Path(__file__).resolve().parents[1]
# the studies that evaluate given (or default) models; codesign trains the models of the designs it searches
STUDIES = [c for c in COMMANDS if c not in ("train", "compare_methods", "reproduce", "codesign")]


def parser_of(name: str) -> argparse.ArgumentParser:
    return importlib.import_module(f"wxy_hw.cli.{name}").build_parser()


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_exits_0_and_every_flag_has_help_and_a_shown_default(name, capsys):
    with pytest.raises(SystemExit) as info:
        importlib.import_module(f"wxy_hw.cli.{name}").main(["--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for action in parser_of(name)._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{name} {action.option_strings} has no help"
        if action.nargs != 0:  # on/off flags have no default to show
            assert "(default: " in text
            shown = " ".join(argparse.ArgumentDefaultsHelpFormatter("x")._get_help_string(action).split())
            assert "%(default)s" in shown, f"{name} {action.option_strings} hides its default"


@pytest.mark.slow
def test_help_of_the_wrapper_and_of_the_console_command():
    for cmd in ([sys.executable, str(ROOT / "experiments" / "noise_sweep.py"), "--help"],
                [sys.executable, "-m", "wxy_hw.cli", "chip_study", "--help"]):
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert res.returncode == 0 and "(default: " in res.stdout, res.stderr


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_shared_vocabulary_is_present(name):
    flags = {o for a in parser_of(name)._actions for o in a.option_strings}
    if name == "reproduce":  # its --budget fixes the dataset; seeds are a list
        assert {"--config", "--out", "--seeds", "--torch-device", "--data-dir", "--quiet"} <= flags
        return
    assert {"--config", "--out", "--seed", "--torch-device", "--dataset" if name != "calibrator_adapt" else "--source",
            "--data-dir"} <= flags
    if name in STUDIES:
        assert "--checkpoints" in flags and "--quiet" in flags
        assert {"--device", "--devices"} & flags
    if name in STUDIES:
        assert "--chips" in flags
    if name == "codesign":
        assert {"--device", "--chips", "--quiet", "--workers", "--ray-address", "--device-set"} <= flags


# --- old spellings: each still works, once more, with one warning naming the release that removes it -----------
OLD_FLAGS = [  # (command, its config class, the old spelling and its values, dest, value stored, the advice)
    ("noise_sweep", "NoiseSweepConfig", ["--realizations", "2"], "chips", 2, "--chips"),
    ("chip_study", "ChipStudyConfig", ["--checkpoint", "a/best.pt"], "checkpoints", ["a/best.pt"], "--checkpoints"),
    ("train", "TrainRunConfig", ["--device", "cpu"], "torch_device", "cpu",
     "--torch-device (--device names the simulated hardware)"),
    ("calibrator_adapt", "CalibratorConfig", ["--chip-seeds", "3", "4"], "chip_seeds", [3, 4], "--chips N (ids seed·1000 + 0 .. N-1)"),
    ("calibrator_adapt", "CalibratorConfig", ["--chip-seed", "3"], "chip_seeds", [3], "--chips N (ids seed·1000 + 0 .. N-1)"),
]


@pytest.mark.parametrize("name, cls, argv, dest, value, new", OLD_FLAGS, ids=[f[2][0] for f in OLD_FLAGS])
def test_old_flag_still_works_with_one_deprecation_line(name, cls, argv, dest, value, new, capsys):
    from wxy_hw import studies
    from wxy_hw.cli import parse
    from wxy_hw.utils import REMOVED_IN

    args = parse(parser_of(name), argv, getattr(studies, cls))
    assert getattr(args, dest) == value
    err = capsys.readouterr().err.splitlines()
    assert err == [f"warning: {argv[0]} is deprecated and will be removed in wxy_hw {REMOVED_IN}; use {new}"]
    assert argv[0] not in parser_of(name).format_help().split()  # hidden
    if name == "train":
        assert not re.search(r"(?<!torch)-device", parser_of("train").format_help())


def _renamed() -> list[tuple[type, str, str]]:
    """(config class, old keyword, field) for every RENAMED entry a study config declares itself."""
    from wxy_hw.studies import StudyConfig

    found, todo = [], list(StudyConfig.__subclasses__())
    while todo:
        cls = todo.pop(0)
        todo += cls.__subclasses__()
        found += [(cls, old, new) for old, new in vars(cls).get("RENAMED", {}).items()]
    return sorted(set(found), key=lambda c: (c[0].__name__, c[1]))


OLD_VALUES = {"realizations": 2, "t_nominal": 3600.0, "overrides": {"noise.read_noise": 0.01},
              "checkpoint": ["a/best.pt"], "device": "cpu", "max_steps": 2}


@pytest.mark.parametrize("cls, old, new", _renamed(), ids=lambda v: v.__name__ if isinstance(v, type) else v)
def test_old_config_keyword_still_works_with_a_deprecation_warning(cls, old, new):
    from wxy_hw.utils import REMOVED_IN

    assert old != new, f"{cls.__name__}.RENAMED maps {old!r} to itself: the old spelling is lost"
    words = rf"keyword {old}= \({cls.__name__}\) is deprecated and will be removed in wxy_hw {re.escape(REMOVED_IN)}; use {new}="
    with pytest.warns(DeprecationWarning, match=words):
        conf = cls.make(**{old: OLD_VALUES[old]})
    assert getattr(conf, new) == OLD_VALUES[old]


def test_old_budget_keyword_still_works_with_a_deprecation_warning():
    from wxy_hw.studies import NoiseSweepConfig
    from wxy_hw.utils import REMOVED_IN

    with pytest.warns(DeprecationWarning, match=rf"keyword budget= .* removed in wxy_hw {re.escape(REMOVED_IN)}; use train_"):
        conf = NoiseSweepConfig.make(budget={"epochs": 1, "subset": 64})
    assert (conf.train_epochs, conf.train_subset) == (1, 64)


def test_old_device_name_of_train_config_still_works_with_a_deprecation_warning():
    from dataclasses import asdict, replace

    from wxy_hw.train import TrainConfig
    from wxy_hw.utils import REMOVED_IN

    with pytest.warns(DeprecationWarning, match=re.escape(f"TrainConfig(device=...) is deprecated and will be removed "
                                                          f"in wxy_hw {REMOVED_IN}; use TrainConfig(torch_device=...)")):
        conf = TrainConfig(device="cpu")
    assert conf.torch_device == "cpu" and "device" not in asdict(conf)  # saved train_config: torch_device only
    with pytest.warns(DeprecationWarning, match=re.escape(f"TrainConfig.device is deprecated and will be removed in "
                                                          f"wxy_hw {REMOVED_IN}; use TrainConfig.torch_device")):
        assert conf.device == "cpu"
    assert replace(conf, lr=0.5).torch_device == "cpu"


def test_old_device_keyword_of_fit_still_works_with_a_deprecation_warning(tmp_path):
    import torch

    from wxy_hw.train import fit
    from wxy_hw.utils import REMOVED_IN, read_json

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    batch = (torch.randn(8, 1, 2, 2), torch.arange(8) % 2)
    with pytest.warns(DeprecationWarning, match=re.escape(f"fit(device=...) is deprecated and will be removed in "
                                                          f"wxy_hw {REMOVED_IN}; use fit(torch_device=...)")):
        fit(net, "baseline", [batch], [batch], epochs=1, out=tmp_path, device="cpu", progress=False)
    config = read_json(tmp_path / "manifest.json", fix="")["config"]
    assert config["torch_device"] == "cpu" and "device" not in config


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "run"
    train_run(method="dsn", dataset="synthetic", arch="resnet8", width=0.125, batch_size=32, subset=64, epochs=1,
              max_steps_per_epoch=2, torch_device="cpu", out=out, progress=False)
    assert tomllib.loads((out / "config.toml").read_text())["method"] == "dsn"
    return out / "best.pt"


@pytest.mark.slow
def test_config_round_trip_reproduces_the_csvs(tiny_checkpoint, tmp_path, capsys):
    from wxy_hw.cli.noise_sweep import main

    first, second, third = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert main(["--device", "reram", "--checkpoints", str(tiny_checkpoint), "--dataset", "synthetic",
                 "--scales", "0", "1.5", "--times", "1", "3600", "--sigmas", "0", "0.1", "--chips", "2",
                 "--samples", "40", "--device-set", "noise.read_noise=0.01", "--torch-device", "cpu",
                 "--out", str(first), "--quiet"]) == 0
    config = tomllib.loads((first / "config.toml").read_text())
    assert config["chips"] == 2 and config["device_set"] == {"noise.read_noise": 0.01} and "out" not in config
    assert main(["--config", str(first / "config.toml"), "--out", str(second), "--quiet"]) == 0
    csvs = sorted(p.name for p in first.glob("*.csv"))
    assert {"sweep.csv", "summary_scale.csv", "summary_time.csv", "flat_minima.csv"} <= set(csvs)
    for name in csvs:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert (first / "config.toml").read_text() == (second / "config.toml").read_text()
    # a flag given on the command line overrides the file
    assert main(["--config", str(first / "config.toml"), "--chips", "1", "--no-flat", "--out", str(third),
                 "--quiet"]) == 0
    again = tomllib.loads((third / "config.toml").read_text())
    assert again["chips"] == 1 and again["flat"] is False and again["scales"] == [0.0, 1.5]
    capsys.readouterr()
    (tmp_path / "bad.toml").write_text('chips = 2\nrealisations = 3\n')
    with pytest.raises(SystemExit):
        main(["--config", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "d")])
    assert "unknown setting(s) realisations" in capsys.readouterr().err and not (tmp_path / "d").exists()


@pytest.mark.slow
def test_redirected_log_has_no_carriage_returns(tmp_path):
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        res = subprocess.run([sys.executable, str(ROOT / "experiments" / "train.py"), "--method", "baseline",
                              "--dataset", "synthetic", "--arch", "resnet8", "--width", "0.125", "--subset", "64",
                              "--batch-size", "16", "--epochs", "2", "--max-steps", "3", "--torch-device", "cpu",
                              "--out", str(tmp_path / "run")], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, timeout=600)
    text = log.read_bytes()
    assert res.returncode == 0, text.decode()
    assert b"\r" not in text
    lines = text.decode().splitlines()
    assert sum(line.startswith("epoch ") for line in lines) == 2  # one line per epoch


def test_exit_stages_flag_trains_only_the_asked_exits(tmp_path, capsys):
    from wxy_hw.checkpoint import load_model
    from wxy_hw.cli.train import main

    out = tmp_path / "run"
    assert main(["--method", "self_distillation", "--dataset", "synthetic", "--arch", "resnet8", "--width", "0.125",
                 "--batch-size", "32", "--subset", "64", "--epochs", "1", "--max-steps", "2",
                 "--exit-stages", "4", "2", "--torch-device", "cpu", "--out", str(out), "--quiet"]) == 0
    model = load_model(out / "best.pt")
    assert model.exit_stages == (1, 3) and model.num_exits == 2  # 1-based on the command line, sorted
    assert tomllib.loads((out / "config.toml").read_text())["exit_stages"] == [4, 2]
    for bad, message in ((["--exit-stages", "1", "2"], "include the deepest, 4"),
                         (["--method", "baseline", "--exit-stages", "2", "4"], "needs a multi-exit method")):
        args = ["--dataset", "synthetic", "--arch", "resnet8", "--out", str(tmp_path / "x"), "--quiet"]
        assert main(args + bad) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_train_architecture_flags_reach_the_cached_models_budget(name):
    """--train-width / --train-stem-stride choose the cached default models' architecture in every study."""
    args = parser_of(name).parse_args(["--train-width", "0.5", "--train-stem-stride", "2", "--train-epochs", "1",
                                       "--train-exit-stages", "2", "3", "4"])
    assert (args.train_width, args.train_stem_stride, args.train_epochs, args.train_exit_stages) == (0.5, 2, 1, [2, 3, 4])
    from wxy_hw.studies.config import EvaluationSettings
    conf = EvaluationSettings(train_width=0.5, train_stem_stride=2, train_epochs=1, train_exit_stages=[2, 3, 4])
    assert conf.budget == dict(epochs=1, width=0.5, stem_stride=2, exit_stages=[2, 3, 4])
    for bad in (["--train-width", "0"], ["--train-stem-stride", "3"], ["--train-exit-stages", "5"]):
        with pytest.raises(SystemExit):
            parser_of(name).parse_args(bad)


def test_sweep_device_old_keywords_still_work_and_name_the_removal_version():
    import torch
    import torch.nn as nn

    from wxy_hw.analysis.sweep import sweep_device
    from wxy_hw.hardware import load_device

    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    batches = [(torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8,)))]
    with pytest.warns(DeprecationWarning, match=r"sweep_device\(realizations=...\) is deprecated and will be removed "
                                                r"in wxy_hw 0\.3; use sweep_device\(chips=...\)"):
        rows = sweep_device({"m": model}, load_device("reram"), batches, scales=[1.0], times=[], t_inference=1.0,
                            realizations=2)
    assert {int(r["chip"]) for r in rows} == {0, 1}
