"""Issue 27: inputs are checked where they enter, with one rule per field (config files, flags, device files).

Every test builds its hostile input itself and stops at parse or load time: no model, no data, seconds.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

from wxy_hw.cli import config_of, parse
from wxy_hw.cli.__main__ import COMMANDS
from wxy_hw.hardware.spec import DeviceSpecError, available_devices, load_device
from wxy_hw.utils import resolve_device

from helpers import edited_device_file


def cli(name: str):
    return importlib.import_module(f"wxy_hw.cli.{name}")


def config_class(name: str) -> type:
    """The config class a study's main() parses into (the one its module imports)."""
    module = cli(name)
    return next(v for k, v in vars(module).items() if k.endswith("Config") and isinstance(v, type)
                and hasattr(v, "KIND"))


def parse_config(name: str, text: str, tmp_path: Path, *argv: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return parse(cli(name).build_parser(), ["--config", str(path), *argv], config_class(name))


def refused(capsys, call) -> str:
    """The error line of a call that must stop with exit status 2 (argparse's usage line before it)."""
    with pytest.raises(SystemExit) as info:
        call()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


# --- case 1: a config file passes the rule of the flag that sets each key ---------------------------------
@pytest.mark.parametrize("text, key, expected, got", [
    ("scales = 5", "scales", "expected a list", "got 5"),                      # a scalar where a list is wanted
    ("chips = 2.5", "chips", "expected an integer ≥ 1", "got 2.5"),            # was a TypeError after 19 s
    ('flat = "no"', "flat", "expected true or false", 'got "no"'),             # was read as true
    ("seed = -7", "seed", "expected a seed from 0 to 2**63 - 1", "got -7"),  # --seed -7 is refused too
    ('checkpoints = "path"', "checkpoints", "expected a list", 'got "path"'),  # was read letter by letter
    ('backend = "magic"', "backend", "expected one of native, aihwkit", 'got "magic"'),
    ("seed = true", "seed", "expected a seed from 0 to 2**63 - 1", "got true"),
    ("scales = []", "scales", "at least one value", "got []"),
    ("device_set = 3", "device_set", "expected a table", "got 3"),
    ('times = [1.0, "nan"]', "times", "expected a finite number ≥ 0", 'got "nan"'),
])
def test_bad_config_value_is_one_line_naming_file_key_expected_and_got(text, key, expected, got, tmp_path, capsys):
    line = refused(capsys, lambda: parse_config("noise_sweep", text, tmp_path))
    assert f"--config {tmp_path / 'config.toml'}: {key}:" in line and expected in line and got in line, line


def test_bad_config_value_stops_before_any_work(tmp_path, monkeypatch, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("work started before the config file was checked")

    monkeypatch.setattr("wxy_hw.cli.noise_sweep.noise_sweep_run", no_work)
    (tmp_path / "c.toml").write_text("chips = 2.5\n")
    line = refused(capsys, lambda: cli("noise_sweep").main(["--config", str(tmp_path / "c.toml")]))
    assert "chips: expected an integer ≥ 1, got 2.5" in line


def test_config_values_are_typed_and_flags_override_bad_ones(tmp_path):
    args = parse_config("noise_sweep", 'flat = false\nscales = [0, 2]\nchips = 3\ntorch_device = "banana"\n'
                        'seed = -7\n', tmp_path, "--torch-device", "cpu", "--seed", "4")
    assert args.flat is False and args.scales == [0.0, 2.0] and all(isinstance(s, float) for s in args.scales)
    assert (args.chips, args.torch_device, args.seed) == (3, "cpu", 4)  # a flag given here replaces a bad value
    args = parse_config("train", 'method_options = { temperature = 4, preset = "paper" }\naugment = false\n',
                        tmp_path, "--method-arg", "alpha=0.5")
    assert args.method_options == {"temperature": 4, "preset": "paper", "alpha": 0.5} and args.augment is False


def _round_trip(name: str, config, tmp_path: Path):
    config.write(tmp_path)
    return config_of(type(config), parse(cli(name).build_parser(), ["--config", str(tmp_path / "config.toml")],
                                         type(config)))


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_study_reads_back_its_default_config(name, tmp_path):
    config = config_class(name)()
    assert _round_trip(name, config, tmp_path).settings() == config.settings()


def test_noise_sweep_and_train_configs_round_trip(tmp_path):
    sweep = config_class("noise_sweep")(
        scales=[0.0, 1.5], times=[1.0, 3600.0], t_inference=60.0, sigmas=[0.0, 0.1], flat=False, chips=2,
        checkpoints=["a/best.pt", "b/best.pt"], device_set={"noise.read_noise": 0.02}, seeds=[0, 1],
        train_exit_stages=[2, 3, 4], train_width=0.5, torch_device="cpu", backend="aihwkit")
    assert _round_trip("noise_sweep", sweep, tmp_path / "sweep").settings() == sweep.settings()
    train = config_class("train")(
        method="self_distillation+qat", method_options={"weight_bits": 4, "temperature": 3.0, "preset": "paper"},
        arch="resnet8", width=0.125, exit_stages=[2, 4], image_size=32, channels=3, augment=False, seed=3,
        teacher="t/best.pt", torch_device="cpu", max_steps_per_epoch=2)
    assert _round_trip("train", train, tmp_path / "train").settings() == train.settings()
    quant = config_class("quant_sweep")(act_bits=[8, None], weight_bits=[8, 4])  # None in a list is "none"
    assert "none" in quant.to_toml()
    assert _round_trip("quant_sweep", quant, tmp_path / "quant").act_bits == [8, None]


# --- case 2: seeds and counts take the shared non-negative rule ------------------------------------------
@pytest.mark.parametrize("name, argv", [
    ("compare_methods", ["--seeds", "-1"]), ("compare_methods", ["--seeds", "0", "1.5"]),
    ("calibrator_adapt", ["--chips", "0"]), ("train", ["--exit-stages", "0", "4"]),
    ("noise_sweep", ["--seeds", "-2"]), ("reproduce", ["--seeds", "-3"]),
])
def test_negative_seeds_and_bad_counts_are_refused_when_parsed(name, argv, capsys):
    line = refused(capsys, lambda: cli(name).build_parser().parse_args(argv))
    assert "expected " in line, line


# --- case 3: --torch-device is checked when parsed, and its messages name it ------------------------------
def test_torch_device_messages_name_the_torch_device_flag():
    with pytest.raises(ValueError, match="unknown torch device 'banana'") as info:
        resolve_device("banana")
    assert "--torch-device" in str(info.value) and "--device cpu" not in str(info.value)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="use --torch-device cpu"):
            resolve_device("cuda")


@pytest.mark.parametrize("name", ["train", "noise_sweep", "reproduce", "calibrator_adapt"])
def test_bad_torch_device_is_refused_when_parsed(name, capsys):
    bad = ["banana"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in bad:
        line = refused(capsys, lambda device=device: cli(name).build_parser().parse_args(["--torch-device", device]))
        assert "argument --torch-device" in line and "use --torch-device" in line, line
    assert cli(name).build_parser().parse_args(["--torch-device", "cpu"]).torch_device == "cpu"


# --- case 4: absurd architecture sizes stop at parse ------------------------------------------------------
@pytest.mark.parametrize("name, argv, expected", [
    ("train", ["--width", "1e6"], "a width multiplier > 0 and ≤ 16"),
    ("train", ["--image-size", "100000"], "an image size from 8 to 1024"),
    ("compare_methods", ["--teacher-width", "1000"], "a width multiplier"),
    ("noise_sweep", ["--train-width", "64"], "a width multiplier"),
    ("calibrator_adapt", ["--width", "1000000"], "an integer from 1 to 256"),
    ("chip_study", ["--rows", "64", "100000"], "an integer from 2 to 4096"),
    ("early_exit_energy", ["--cols", "1000000"], "an integer from 2 to 4096"),
])
def test_absurd_architecture_sizes_are_one_line_at_parse(name, argv, expected, capsys):
    line = refused(capsys, lambda: cli(name).build_parser().parse_args(argv))
    assert expected in line, line


def test_largest_allowed_sizes_still_parse():
    args = cli("train").build_parser().parse_args(["--width", "16", "--image-size", "1024"])
    assert (args.width, args.image_size) == (16.0, 1024)


# --- case 5: every physical value of a device file has bounds; a name is not a path ------------------------
def _device_file(tmp_path: Path, section: str, key: str, value: str) -> Path:
    return edited_device_file(tmp_path, section, key, value, "hostile.toml")


@pytest.mark.parametrize("section, key, value, allowed", [
    ("array", "rows", "1000000000000000", "<= 4096"),
    ("mapping", "g_max_uS", "1e300", "<= 10000"),
    ("noise", "read_noise", "1e6", "<= 1"),
    ("noise", "programming_scale", "1e9", "<= 100"),
    ("energy", "cell_read_fJ", "1e12", "<= 10000"),
    ("energy", "mvm_latency_ns", "1e12", "<= 1e+06"),
    ("noise", "max_time_s", "1e20", "<= 3.2e+09"),
    ("mapping", "on_off_ratio", "1e30", "<= 1e+06"),
])
def test_out_of_range_device_values_name_file_key_and_range(section, key, value, allowed, tmp_path):
    path = _device_file(tmp_path, section, key, value)
    with pytest.raises(DeviceSpecError, match=f"{section}.{key} = .* is out of range; expected a number") as info:
        load_device(path)
    assert str(path) in str(info.value) and allowed in str(info.value)
    with pytest.raises(DeviceSpecError, match=f"{section}.{key}"):  # --device-set goes through the same rule
        load_device("reram", {f"{section}.{key}": float(value) if "." in value or "e" in value else int(value)})


@pytest.mark.parametrize("name", ["../../x", "a/b", "a\\\\b", "..", " "])
def test_device_name_with_a_path_is_refused(name, tmp_path):
    path = _device_file(tmp_path, "device", "name", f'"{name}"')
    with pytest.raises(DeviceSpecError, match=r"device.name = .* is not accepted; expected a plain name"):
        load_device(path)


def test_shipped_devices_load_within_the_bounds():
    assert {"reram", "pcm", "ideal", "digital_int8", "subthreshold_cmos"} <= set(available_devices())
    for name in available_devices():
        assert load_device(name).name == name


def test_hostile_device_file_stops_a_study_before_any_work(tmp_path, monkeypatch, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("work started before the device file was checked")

    monkeypatch.setattr("wxy_hw.studies.noise_sweep.resolve_checkpoints", no_work)
    path = _device_file(tmp_path, "noise", "read_noise", "1e6")
    assert cli("noise_sweep").main(["--device", str(path), "--torch-device", "cpu", "--out", str(tmp_path / "o"),
                                    "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "noise.read_noise" in err and "<= 1" in err, err


@pytest.mark.parametrize("key, value", [("vdd", 1e6), ("adc_cycle_a_fJ", 1e300), ("cell_area_F2", 1e9),
                                        ("leakage_uW_per_array", 1e12), ("add16_pJ", -1.0)])
def test_out_of_range_technology_values_name_file_key_and_range(key, value, tmp_path):
    from wxy_hw.hardware.technology import TECH_DIR, load_technology

    text = (TECH_DIR / "cmos22.toml").read_text()
    lines = [f"{key} = {value!r}" if line.startswith(f"{key} =") else line for line in text.splitlines()]
    path = tmp_path / "tech.toml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DeviceSpecError, match=rf"{path}: technology\.{key} = .*; expected a number from .* to "):
        load_technology(path)
    assert load_technology("cmos22") and load_technology("cmos130")  # the shipped files sit inside the bounds


@pytest.mark.parametrize("name, argv", [("train", ["--seed", "99999999999999999999"]),
                                        ("noise_sweep", ["--seed", str(2 ** 63)]),
                                        ("compare_methods", ["--seeds", "0", str(2 ** 64)])])
def test_seeds_beyond_64_bits_are_refused_when_parsed(name, argv, capsys):
    with pytest.raises(SystemExit) as caught:
        importlib.import_module(f"wxy_hw.cli.{name}").build_parser().parse_args(argv)
    assert caught.value.code == 2 and "a seed from 0 to 2**63 - 1" in capsys.readouterr().err


# --- case 6: --method-arg values are checked by their method when parsed, before any run directory -------------
@pytest.mark.parametrize("argv, expected", [
    (["--method", "baseline", "--method-arg", "label_smoothing=5"], "--method-arg label_smoothing=5: baseline's"),
    (["--method", "baseline", "--method-arg", "label_smoothing=[1]"], "--method-arg label_smoothing=[1]: baseline's"),
    (["--method", "hwa", "--method-arg", "device=5"], "--method-arg device=5: hwa's device must be a device name"),
    (["--method", "hwa", "--method-arg", "noise_scale=-1"], "--method-arg noise_scale=-1: hwa's noise_scale"),
    (["--method", "kd", "--method-arg", "temperature=-4"], "--method-arg temperature=-4: kd's temperature must be"),
    (["--method", "kd", "--method-arg", "alpha=nan"], "--method-arg alpha=nan: kd's alpha must be a number from 0"),
    (["--method", "kd", "--method-arg", "alpha=abc"], "--method-arg alpha=abc: kd's alpha must be a number from 0"),
    (["--method", "dml", "--method-arg", "temperature=0"], "--method-arg temperature=0: dml's temperature must be"),
    (["--method", "baseline", "--method-arg", "foo"], "--method-arg foo: expected KEY=VALUE; give e.g. --method-arg"),
])
def test_bad_method_arg_is_one_line_before_any_work(argv, expected, tmp_path, monkeypatch, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("training started before --method-arg was checked")

    monkeypatch.setattr("wxy_hw.cli.train.train_run", no_work)
    out = tmp_path / "run"
    line = refused(capsys, lambda: cli("train").main([*argv, "--out", str(out), "--torch-device", "cpu", "--quiet"]))
    assert expected in line and "give e.g." in line, line
    assert not out.exists()


def test_comparison_method_args_are_checked_per_method_with_their_scope(capsys):
    parser = cli("compare_methods").build_parser()
    line = refused(capsys, lambda: parse(parser, ["--methods", "baseline", "hwa", "--method-arg", "hwa.noise_scale=-1"],
                                         config_class("compare_methods")))
    assert "--method-arg hwa.noise_scale=-1: hwa's noise_scale must be a finite number ≥ 0" in line, line
    args = parse(parser, ["--methods", "baseline", "dsn", "--method-arg", "exit_weight=0.5"], config_class("compare_methods"))
    assert args.method_options == {"exit_weight": 0.5}  # an option only one of the methods takes is no error


def test_key_value_flag_without_a_key_exits_2(capsys):
    line = refused(capsys, lambda: cli("noise_sweep").build_parser().parse_args(["--device-set", "noise"]))
    assert "--device-set noise: expected SECTION.KEY=VALUE; give e.g. --device-set noise." in line, line


# --- case 7: a checkpoint's training record has the types studies read ------------------------------------------
def _checkpoint(path: Path, **extra) -> Path:
    from wxy_hw.checkpoint import save_checkpoint
    from wxy_hw.models import build_model

    data = dict(name="synthetic", num_classes=10, channels=1, image_size=28, mean=[0.5], std=[0.3],
                train_subset=None, val_fraction=0.1)
    save_checkpoint(path, build_model("resnet8", 10, 1, 0.125, 28, multi_exit=False), method="baseline", data=data,
                    **extra)
    return path


@pytest.mark.parametrize("train_config, problem", [
    ({"seed": "x"}, "train_config.seed is a str, not int"), ({"seed": True}, "train_config.seed is a bool, not int"),
    ({"seed": -1}, "train_config.seed is -1, outside 0..2**63 - 1"), ({"lr": "fast"}, "train_config.lr is a str"),
])
def test_checkpoint_with_a_bad_training_record_is_refused_in_one_line(train_config, problem, tmp_path):
    from wxy_hw.checkpoint import CheckpointError, read_checkpoint

    path = _checkpoint(tmp_path / "best.pt", train_config=train_config)
    with pytest.raises(CheckpointError, match="cannot be used") as info:
        read_checkpoint(path, data=True)
    assert problem in str(info.value) and "\n" not in str(info.value)
    assert read_checkpoint(_checkpoint(tmp_path / "ok.pt", train_config={"seed": 3, "lr": 0.1}), data=True)


@pytest.mark.parametrize("name", ["noise_sweep", "early_exit_energy", "chip_study"])
def test_bad_checkpoint_seed_stops_a_study_before_its_run_directory(name, tmp_path, capsys):
    path = _checkpoint(tmp_path / "best.pt", train_config={"seed": "x"})
    out = tmp_path / "out"
    status = cli(name).main(["--checkpoints", str(path), "--dataset", "synthetic", "--out", str(out),
                             "--torch-device", "cpu", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "train_config.seed is a str, not int" in err, err
    assert not out.exists()


def test_raw_pickle_checkpoint_is_refused_without_torch_warnings(tmp_path):
    import pickle
    import warnings

    from wxy_hw.checkpoint import CheckpointError, read_checkpoint

    path = tmp_path / "raw.pt"
    path.write_bytes(pickle.dumps({"format": "wxy_hw.checkpoint/1"}, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError, match="is not a torch checkpoint"):
            read_checkpoint(path)
    assert [str(w.message) for w in caught] == []
