"""Helpers shared by test files (import them from here, never from another test file)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a one-step training budget on synthetic data: seconds on a CPU
TINY = dict(method="baseline", dataset="synthetic", arch="resnet8", width=0.125, batch_size=32, subset=64,
            max_steps_per_epoch=1, torch_device="cpu", progress=False)
TINY_FLAGS = ["--dataset", "synthetic", "--arch", "resnet8", "--width", "0.125", "--batch-size", "32",
              "--subset", "64", "--max-steps", "1", "--torch-device", "cpu", "--quiet"]


def script(path: str):
    """The module of a script in the repository (``experiments/noise_sweep.py``, ``scripts/train_zoo.py``), loaded in
    this process (fast: no interpreter start-up)."""
    spec = importlib.util.spec_from_file_location(f"script_{Path(path).stem}", ROOT / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cli(name: str):
    """The main() of experiments/<name>.py, run in this process."""
    return script(f"experiments/{name}.py").main


def nonempty(xs):
    """``xs``, asserted to hold at least one item, for ``all(...)`` (which passes vacuously on nothing).

    A sized collection (list, dict, ...) comes back as it is; an iterator (a generator, ``zip(..., strict=True)``)
    comes back as a list."""
    if not hasattr(xs, "__len__"):
        xs = list(xs)
    assert len(xs) > 0, "an empty collection: all(...) over it would pass without checking anything"
    return xs


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (relative name → bytes): equal snapshots mean nothing was changed."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def edited_device_file(folder: Path, section: str, key: str, value: str, name: str = "edited.toml") -> Path:
    """The shipped reram.toml with ``[section] key = value`` (replaced, or added), written to ``folder/name``."""
    from wxy_hw.hardware.spec import devices_dir

    out, current, done = [], None, False
    for line in (devices_dir() / "reram.toml").read_text().splitlines():
        if line.startswith("["):
            current = line.strip("[] ")
        if current == section and line.split("=")[0].strip() == key:
            line, done = f"{key} = {value}", True
        out.append(line)
    if not done:
        out.insert(out.index(f"[{section}]") + 1, f"{key} = {value}")
    path = folder / name
    path.write_text("\n".join(out) + "\n")
    return path


def check_device_set_and_adc_bits_reach_both(run, tmp_path: Path, more_cells: dict | None = None) -> None:
    """``run(out, **chip_settings) -> (accuracy by exit, energy by exit)`` of a study: ``--device-set`` values that
    put each weight on more cells (``more_cells``; default two cell pairs per weight, finer weights) and ``--adc-bits
    3`` must each change the accuracy, and move the energy of every exit the way the cost model says (more cells per
    weight: up; a cheaper converter: down); the table states its converters."""
    acc, energy = run(tmp_path / "plain")
    assert energy and set(energy) <= set(acc)  # every exit priced, and each also has an accuracy
    acc_set, energy_set = run(tmp_path / "set", device_set=more_cells or {"mapping.cells_per_weight": 2})
    assert acc_set != acc and all(energy_set[k] > energy[k] for k in energy)
    # a 3-bit ADC: converters enter the accuracy run, and the ADC energy falls with its bits
    acc_adc, energy_adc = run(tmp_path / "adc", adc_bits=3)
    assert acc_adc != acc and all(energy_adc[k] < energy[k] for k in energy)
    assert "ideal converters in accuracy" in (tmp_path / "plain" / "table.md").read_text()
    assert "3-bit ADC" in (tmp_path / "adc" / "table.md").read_text()
