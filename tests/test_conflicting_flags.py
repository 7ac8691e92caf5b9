"""A flag the command would ignore beside another is refused in one line before any work, never dropped without a
word: default-model settings beside --checkpoints, a teacher for methods that learn from none, study settings beside
chip_study --validate; --times the device model or backend cannot sweep is refused, not clipped."""
from __future__ import annotations

import pytest

from wxy_hw.studies.train import train_run

from helpers import TINY, TINY_FLAGS, cli


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    train_run(out=out, epochs=1, **TINY)
    return out / "best.pt"


@pytest.mark.parametrize("study, extra, flag", [
    ("noise_sweep", ["--methods", "nope"], "methods"),
    ("noise_sweep", ["--retrain"], "retrain"),
    ("noise_sweep", ["--train-epochs", "3"], "train_epochs"),
    ("early_exit_energy", ["--methods", "baseline"], "methods"),
    ("quant_sweep", ["--train-subset", "100"], "train_subset"),
    ("corruption_robustness", ["--methods", "baseline"], "methods"),
    ("chip_study", ["--method", "baseline"], "method"),
])
def test_default_model_settings_beside_given_checkpoints_are_refused(checkpoint, tmp_path, capsys, study, extra, flag):
    out = tmp_path / "out"
    code = cli(study)(["--checkpoints", str(checkpoint), "--dataset", "synthetic", *extra, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists(), err
    assert err.count("\n") == 0 and "with --checkpoints the given files are measured instead: drop one" in err, err
    assert flag.replace("_", "-") in err or flag in err, err


def test_a_teacher_for_methods_that_learn_from_none_is_refused(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli("train")([*TINY_FLAGS, "--method", "baseline", "--teacher", str(checkpoint), "--out", str(out)]) == 2
    assert "learns from no teacher" in capsys.readouterr().err and not out.exists()
    assert cli("compare_methods")([*TINY_FLAGS, "--methods", "baseline", "dsn", "--seeds", "0", "--teacher",
                                   str(checkpoint), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--teacher is for methods that learn from a teacher" in err and not out.exists(), err


def test_validate_takes_no_study_settings(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        cli("chip_study")(["--validate", "--devices", "nosuch", "--out", str(out)])
    assert exit_.value.code == 2 and "drop --devices (or --validate)" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("extra, says", [
    (["--times", "1e20"], "1e+20 s lies beyond the drift model of 'reram', which covers up to 172800 s"),
    (["--backend", "aihwkit", "--times", "1", "60"], "60 s: aihwkit's ReRamWan2022NoiseModel only has data at"),
    (["--t-inference", "1e20"], "its drift model covers up to 172800 s"),
])
def test_asked_times_are_swept_as_asked_or_refused_before_the_main_job_starts(tmp_path, capsys, extra, says):
    """--times was clipped to the model's range (or replaced by aihwkit's) without a word; and the main job (one
    sweep per zoo seed) wrote its folder before its settings were checked."""
    out = tmp_path / "out"
    assert cli("noise_sweep")(["--device", "reram", *extra, "--out", str(out), "--quiet"]) == 2
    assert says in capsys.readouterr().err and not out.exists()


def test_times_for_a_device_that_does_not_drift_are_said_to_add_nothing():
    from wxy_hw.studies.config import SettingError
    from wxy_hw.studies.noise_sweep import noise_sweep_run

    said = []
    with pytest.raises(SettingError, match="chips"):  # stopped by a later check: the note comes first
        noise_sweep_run(device="subthreshold_cmos", times=[60.0, 86400.0], chips=0, log=said.append)
    assert said == ["[noise_sweep] subthreshold_cmos does not drift: its accuracy is the same at every time, so "
                    "--times 60 86400 adds no time axis"]


def test_a_folder_named_like_a_device_neither_hides_it_nor_reads_as_missing(tmp_path, monkeypatch):
    from wxy_hw.hardware.spec import DeviceSpecError, load_device

    monkeypatch.chdir(tmp_path)
    (tmp_path / "reram").mkdir()  # e.g. a folder of one's own results
    assert load_device("reram").name == "reram"
    with pytest.raises(DeviceSpecError, match="is a folder, not a device file"):
        load_device(str(tmp_path / "reram"))


def test_a_bad_method_option_from_the_library_is_refused_before_the_run_directory(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="kd's temperature must be a finite number > 0"):
        train_run(out=out, epochs=1, **{**TINY, "method": "kd"}, method_options={"temperature": -4.0})
    assert not out.exists()


def test_a_checkpoint_of_an_unknown_dataset_is_not_advised_as_a_dataset_flag():
    from wxy_hw.checkpoint import CheckpointError
    from wxy_hw.studies.spine import check_checkpoint_dataset

    with pytest.raises(CheckpointError, match=r"pass --dataset synthetic \(or a checkpoint"):
        check_checkpoint_dataset("m.pt", {"data": {"name": "synthetic"}}, "fashion_mnist")
    with pytest.raises(CheckpointError, match=r"give a checkpoint trained on fashion_mnist \(no --dataset names "
                                              r"'../../etc/passwd'\)"):
        check_checkpoint_dataset("m.pt", {"data": {"name": "../../etc/passwd"}}, "fashion_mnist")
