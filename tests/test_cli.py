"""End-to-end: the experiment CLI on a tiny budget, and its user-facing errors."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "train.py"), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)


def train_tiny_runs(tmp_path: Path, methods: tuple[str, ...], epochs: int = 2, *extra: str) -> None:
    """Train each method on synthetic data (ResNet-8, width 1/8) into tmp_path/<method>; fail loudly."""
    common = ["--dataset", "synthetic", "--arch", "resnet8", "--width", "0.125", "--epochs", str(epochs),
              "--batch-size", "64", "--quiet", *extra]
    for method in methods:
        res = run_cli("--method", method, "--out", str(tmp_path / method), *common)
        assert res.returncode == 0, res.stderr


@pytest.mark.slow
def test_train_cli_end_to_end_then_kd_with_that_teacher(tmp_path):
    common = ["--dataset", "synthetic", "--arch", "resnet8", "--width", "0.125", "--epochs", "2",
              "--batch-size", "64", "--quiet"]
    res = run_cli("--method", "self_distillation", "--out", str(tmp_path / "sd"), *common)
    assert res.returncode == 0, res.stderr
    assert "Classifier 1/4" in res.stdout and "Ensemble" in res.stdout
    run = tmp_path / "sd"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["config"]["seed"] == 0
    assert manifest["versions"]["torch"] and "commit" in manifest["git"] and manifest["wall_time_s"] > 0
    results = json.loads((run / "results.json").read_text())
    assert len(results["test"]["exits"]) == 4 and results["costs"][0]["macs"] < results["costs"][3]["macs"]
    assert "test" in (run / "metrics.csv").read_text()
    # Re-running into the same directory refuses instead of overwriting the run.
    again = run_cli("--method", "self_distillation", "--out", str(run), *common)
    assert again.returncode == 2 and "already holds a train run (status complete, started " in again.stderr
    kd = run_cli("--method", "kd", "--teacher", str(run / "best.pt"), "--out", str(tmp_path / "kd"), *common)
    assert kd.returncode == 0, kd.stderr
    assert "Baseline" in kd.stdout


def test_cli_errors_are_one_clear_line(tmp_path):
    res = run_cli("--dataset", "cifar10", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r"), "--quiet")
    assert res.returncode == 2 and res.stderr.startswith("error: dataset 'cifar10' not found")
    assert res.stderr.count("\n") == 1 and "pass --data-dir DIR" in res.stderr
    assert "Traceback" not in res.stderr
    res = run_cli("--method", "kd", "--dataset", "synthetic", "--out", str(tmp_path / "k"), "--quiet")
    assert res.returncode == 2 and "needs --teacher" in res.stderr
    assert not (tmp_path / "k").exists()


@pytest.mark.slow
def test_noise_sweep_cli_end_to_end(tmp_path):
    train_tiny_runs(tmp_path, ("baseline", "self_distillation"))
    res = subprocess.run([sys.executable, str(ROOT / "experiments" / "noise_sweep.py"), "--device", "pcm",
                          "--checkpoints", str(tmp_path / "baseline" / "best.pt"),
                          str(tmp_path / "self_distillation" / "best.pt"), "--dataset", "synthetic",
                          "--scales", "0", "1", "--times", "1", "86400", "--sigmas", "0", "0.1",
                          "--chips", "2", "--samples", "50", "--headline-chips", "3", "--headline-samples", "40",
                          "--bn-recalibrate-curves", "--out", str(tmp_path / "sweep"), "--quiet"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "sweep"
    # the nominal point: 3 chips × exits (baseline 1, self_distillation 4 + ensemble) × 2 series, beside the digital
    headline = (out / "headline.csv").read_text().splitlines()
    assert headline[0] == "method,exit,chip,accuracy,digital" and len(headline) - 1 == 2 * 3 * (1 + 5)
    for name in ("headline.csv", "digital.csv",
                 "sweep.csv", "summary_scale.csv", "summary_time.csv", "flat_minima.csv", "accuracy_vs_noise.png",
                 "accuracy_vs_time.png", "flat_minima.png", "table.md", "energy.csv"):
        assert (out / name).exists(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["config"]["device"]["name"] == "pcm"
    rows = (out / "sweep.csv").read_text().splitlines()
    # (2 scales + 2 times) × 2 chips × exits: baseline has 1 exit, self_distillation 4 + ensemble; each method
    # twice: as deployed and with its BN statistics recalibrated through the chip (--bn-recalibrate-curves)
    assert len(rows) - 1 == 2 * ((2 + 2) * 2 * 1 + (2 + 2) * 2 * 5)
    assert sum(r.startswith("baseline + BN recal,") for r in rows) == (2 + 2) * 2


@pytest.mark.slow
def test_early_exit_energy_cli_end_to_end(tmp_path):
    train_tiny_runs(tmp_path, ("baseline", "scan"))
    assert json.loads((tmp_path / "scan" / "manifest.json").read_text())["config"]["heads"] == "scan"
    res = subprocess.run([sys.executable, str(ROOT / "experiments" / "early_exit_energy.py"), "--device", "reram",
                          "--checkpoints", str(tmp_path / "baseline" / "best.pt"), str(tmp_path / "scan" / "best.pt"),
                          "--dataset", "synthetic", "--chips", "2", "--samples", "100", "--bits-per-cell", "4",
                          "--out", str(tmp_path / "ee"), "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr
    for name in ("per_exit.csv", "dynamic.csv", "front.csv", "table.md", "energy_vs_accuracy.png",
                 "threshold_front.png", "exit_shares.png"):
        assert (tmp_path / "ee" / name).exists(), name
    dynamic = (tmp_path / "ee" / "dynamic.csv").read_text().splitlines()
    assert len(dynamic) == 1 + 1 + 2  # header, digital, two chips (scan only: baseline has one exit)
    assert "Dynamic inference" in res.stdout
    # one configuration, one price: chip_study at early_exit_energy's chip (the reram file's 256×256 arrays,
    # its default 8-bit ADC, 8-bit weights in 4-bit slices) prices every exit exactly as per_exit.csv does
    study = subprocess.run([sys.executable, str(ROOT / "experiments" / "chip_study.py"), "--checkpoints",
                            str(tmp_path / "scan" / "best.pt"), "--dataset", "synthetic", "--devices", "reram",
                            "--rows", "256", "--adc-bits", "8", "--bits-per-cell", "4", "--chips", "1",
                            "--samples", "20", "--out", str(tmp_path / "cs"), "--quiet"],
                           capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert study.returncode == 0, study.stderr
    with open(tmp_path / "ee" / "per_exit.csv") as f:
        per_exit = {r["exit"]: float(r["device_energy_pJ"]) for r in csv.DictReader(f) if r["method"] == "scan"}
    with open(tmp_path / "cs" / "study.csv") as f:
        priced = {r["exit"]: float(r["energy_pJ"]) for r in csv.DictReader(f)}
    assert per_exit and per_exit == pytest.approx(priced, rel=1e-12)


@pytest.mark.slow
def test_quant_sweep_cli_end_to_end(tmp_path):
    common = ["--dataset", "synthetic", "--arch", "resnet8", "--width", "0.125", "--epochs", "1", "--batch-size", "64",
              "--quiet"]
    assert run_cli("--method", "dsn", "--out", str(tmp_path / "dsn"), *common).returncode == 0
    assert run_cli("--method", "dsn+qat", "--method-arg", "weight_bits=3", "--out", str(tmp_path / "qat"),
                   *common).returncode == 0
    res = subprocess.run([sys.executable, str(ROOT / "experiments" / "quant_sweep.py"), "--device", "subthreshold_cmos",
                          "--checkpoints", str(tmp_path / "dsn" / "best.pt"), "--qat-checkpoints",
                          str(tmp_path / "qat" / "best.pt"), "--weight-bits", "8", "2", "--dataset", "synthetic",
                          "--chips", "2", "--samples", "50", "--out", str(tmp_path / "qs"), "--quiet"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "qs" / "quant_sweep.csv").read_text()
    assert ",qat,3," in text and ",ptq,2," in text and (tmp_path / "qs" / "accuracy_vs_bits_digital.png").exists()
    with open(tmp_path / "qs" / "quant_sweep.csv") as f:
        device_rows = [r for r in csv.DictReader(f) if r["setting"] == "subthreshold_cmos" and r["mode"] == "ptq"]
    cells = {int(r["weight_bits"]): int(r["cells_per_weight"]) for r in device_rows}
    assert cells == {8: 2, 2: 2}  # a continuous cell holds the whole magnitude: one slice, ×2 for the pair
    energy = {int(r["weight_bits"]): float(r["energy_pJ"]) for r in device_rows if r["exit"] == "4"}
    assert energy[2] < energy[8]  # fewer weight bits: lower-state cells, fewer accumulation bits
    bad = subprocess.run([sys.executable, str(ROOT / "experiments" / "quant_sweep.py"), "--weight-bits", "33",
                          "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "weight_bits must be an integer from 2 to 8, got 33" in bad.stderr


@pytest.mark.slow
def test_corruption_robustness_cli_end_to_end(tmp_path):
    train_tiny_runs(tmp_path, ("baseline", "ada"), 1)
    res = subprocess.run([sys.executable, str(ROOT / "experiments" / "corruption_robustness.py"),
                          "--checkpoints", str(tmp_path / "baseline" / "best.pt"), str(tmp_path / "ada" / "best.pt"),
                          "--dataset", "synthetic", "--corruptions", "gaussian_noise", "rotation", "--severities", "1", "5",
                          "--samples", "60", "--adv-samples", "30", "--pgd-steps", "2", "--devices", "subthreshold_cmos",
                          "--chips", "2", "--hw-samples", "30", "--hw-severities", "5", "--out", str(tmp_path / "rob"),
                          "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "rob"
    for name in ("corruption.csv", "corruption_errors.csv", "adversarial.csv", "hardware.csv", "feature_pca.png",
                 "accuracy_vs_severity.png", "hardware_corruption.png", "table.md"):
        assert (out / name).exists(), name
    assert "| ada " in res.stdout and "mCE" in res.stdout
    rows = (out / "corruption.csv").read_text().splitlines()
    assert len(rows) - 1 == 2 * (1 + 2 * 2)  # two single-exit models × (clean + 2 corruptions × 2 severities)
    hw = (out / "hardware.csv").read_text().splitlines()
    assert len(hw) - 1 == 2 * 2 * (1 + 2)  # models × chips × (clean + 2 corruptions × 1 severity)
    bad = subprocess.run([sys.executable, str(ROOT / "experiments" / "corruption_robustness.py"),
                          "--corruptions", "fog", "--out", str(tmp_path / "bad")], capture_output=True, text=True,
                         cwd=ROOT, timeout=600)
    assert bad.returncode == 2 and "unknown corruption" in bad.stderr and not (tmp_path / "bad").exists()
