"""Our cost model beside the real DNN+NeuroSim V1.3, part by part, on a grid of chips (``make validate``).

    python validation/neurosim_grid.py                # the default grid: one setting at a time around NeuroSim's default
    python validation/neurosim_grid.py --full         # the product of every setting (hours)
    python validation/neurosim_grid.py --from-results validation/results/neurosim_grid.json   # recompare, no NeuroSim

Both models price the same network (``--nets``: our VGG-11 w0.25 on a Fashion-MNIST image, NeuroSim's VGG-8 on a
seeded image) with the same weights and the same input image, on the same cells (NeuroSim V1.3's default 1T1R RRAM
cell, 6 kOhm / on-off 150, ``validation/devices/neurosim_rram.toml``; or V1.4's 100 kOhm / on-off 17,
``neurosim_rram_100k.toml``, given to V1.3 through Param.cpp) and the same geometry (NeuroSim's feature size and access transistor,
``validation/technology/``). NeuroSim reads its input traces; ours measures the same image's input-bit activity.
NeuroSim's readout is its default multi-level current sense amplifier (MLSA: 2^bits - 1 references compared at once),
priced here as our ``flash`` converter; at 130 nm both run at NeuroSim's 1.3 V supply.

Parts (NeuroSim's printed breakdown -> ours):
  total          dynamic + leakage                        -> energy_pJ
  array+adc      "ADC" (V1.3 folds the array read into it) -> array + adc
  accumulation   "Accumulation Circuits"                   -> digital (shift-add and slice / tile accumulation)
  periphery      "Other Peripheries" - buffer - interconnect (decoders, switch matrices, level shifters, muxes, drivers)
                                                           -> dac (row drivers)
  buffer, interconnect, leakage                            -> the same parts
Areas: chip, array, adc (ADC + sense), accumulation (ours: shift-add units), other (ours: drivers + registers + buffer).

Writes OUT/neurosim_grid.csv (net, config, part, ours, neurosim, ratio), OUT/neurosim_grid.json (NeuroSim's results,
so ``--from-results`` recompares without NeuroSim), OUT/neurosim_grid.png, and prints the summary against the targets
(total 0.8-1.25 on >= 90 % of configs, every part 0.5-2, chip area 0.67-1.5).
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterable

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation.neurosim import NeuroSimConfig, NeuroSimError, build_network, run_network
from wxy_hw.output import write_rows_csv
from wxy_hw.utils import atomic_write_text

HERE = Path(__file__).resolve().parent
# NeuroSim's cells, each as NeuroSim is told (Param.cpp) and as our device file describes it
CELLS = {"6k": (HERE / "devices" / "neurosim_rram.toml", ()),
         "100k": (HERE / "devices" / "neurosim_rram_100k.toml", (("resistanceOn", "100e3"), ("resistanceOff", "100e3*17")))}
TECH = {22: HERE / "technology" / "neurosim_cmos22.toml", 130: HERE / "technology" / "neurosim_cmos130.toml"}
NEUROSIM_VDD = {22: 0.85, 130: 1.3}  # NeuroSim V1.3 Technology.cpp supply per node
DEFAULT = dict(rows=128, adc_bits=5, bits_per_cell=2, cols_per_adc=8, parallel_rows=None, node=22, cell="6k")
AXES: dict[str, list[Any]] = {"rows": [64, 128, 256], "adc_bits": [3, 4, 5, 6, 8], "bits_per_cell": [1, 2, 4],
                              "parallel_rows": [None, 1], "node": [22, 130], "cell": ["6k", "100k"]}
ENERGY_PARTS = ("total", "array+adc", "accumulation", "periphery", "buffer", "interconnect", "leakage")
AREA_PARTS = ("area chip", "area array", "area adc", "area accumulation", "area other")
TARGETS = {"total": (0.8, 1.25), "part": (0.5, 2.0), "area chip": (0.67, 1.5)}


def grid(full: bool = False) -> list[dict[str, Any]]:
    """The chip settings to compare: NeuroSim's default and one axis changed at a time, or (``full``) the product."""
    if full:
        return [dict(zip(AXES, values)) | {"cols_per_adc": 8} for values in itertools.product(*AXES.values())]
    out = [dict(DEFAULT)]
    for axis, values in AXES.items():
        out += [dict(DEFAULT, **{axis: v}) for v in values if v != DEFAULT[axis]]
    return out


def neurosim_config(setting: dict[str, Any]) -> NeuroSimConfig:
    return NeuroSimConfig(rows=setting["rows"], adc_bits=setting["adc_bits"], bits_per_cell=setting["bits_per_cell"],
                          cols_per_adc=setting["cols_per_adc"], parallel_rows=setting["parallel_rows"], node=setting["node"],
                          params=CELLS[setting.get("cell", "6k")][1])


def our_report(net: str, setting: dict[str, Any], data_dir: str | None = None, image: Any = None,
               checkpoint: str | None = None) -> dict[str, Any]:
    """Our chip_report of ``net`` at ``setting``, on NeuroSim's cell and geometry, activity measured on the same image
    (``image``: that image as nested lists, when the dataset that gave it may be missing)."""
    import torch

    from wxy_hw.hardware import ChipConfig, chip_report

    model, x, _, _ = build_network(net, data_dir=data_dir, checkpoint=checkpoint)
    if image is not None:
        x = torch.tensor(image, dtype=torch.float32)
    model.eval()
    cell = CELLS[setting.get("cell", "6k")][0]
    cfg = ChipConfig(device=str(cell), rows=setting["rows"], cols=setting["rows"], adc_bits=setting["adc_bits"],
                     adc_type="flash", dac_bits=1, weight_bits=8, act_bits=8, bits_per_cell=setting["bits_per_cell"],
                     parallel_rows=setting["parallel_rows"], cols_per_adc=setting["cols_per_adc"], differential=False,
                     technology=str(TECH[setting["node"]]), vdd=NEUROSIM_VDD[setting["node"]], ideal_converters=True)
    with torch.no_grad():
        return chip_report(model, cfg, calibration=[x])["chip"]


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """part -> (ours, NeuroSim): energies in pJ, areas in mm²."""
    other = theirs["other_pJ"] - theirs["buffer_pJ"] - theirs["ic_pJ"]
    um2 = 1e-6
    return {
        "total": (ours["energy_pJ"], theirs["dynamic_pJ"] + theirs["leakage_pJ"]),
        "array+adc": (ours["array_pJ"] + ours["adc_pJ"], theirs["adc_pJ"]),
        "accumulation": (ours["digital_pJ"], theirs["accum_pJ"]),
        "periphery": (ours["dac_pJ"], other),
        "buffer": (ours["buffer_pJ"], theirs["buffer_pJ"]),
        "interconnect": (ours["interconnect_pJ"], theirs["ic_pJ"]),
        "leakage": (ours["leakage_pJ"], theirs["leakage_pJ"]),
        "area chip": (ours["area_mm2"], theirs["area_um2"] * um2),
        "area array": (ours["area_array_mm2"], theirs["area_array_um2"] * um2),
        "area adc": (ours["area_adc_mm2"], theirs["area_adc_um2"] * um2),
        "area accumulation": (ours["area_digital_mm2"], theirs["area_accum_um2"] * um2),
        "area other": (ours["area_drivers_mm2"] + ours["area_tile_buffers_mm2"] + ours["area_buffer_mm2"],
                       (theirs["area_other_um2"] + theirs["area_ic_um2"]) * um2),
    }


def label(setting: dict[str, Any]) -> str:
    p = setting["parallel_rows"]
    return (f"{setting['node']}nm R{setting['rows']} adc{setting['adc_bits']} bpc{setting['bits_per_cell']} "
            f"{'all rows' if p is None else f'{p} row'} cell {setting.get('cell', '6k')}")


def rows_of(net: str, setting: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for part, (a, b) in compare(ours, theirs).items():
        out.append(dict(net=net, config=label(setting), part=part, ours=a, neurosim=b,
                        ratio=a / b if b else math.nan, **{f"setting_{k}": v for k, v in setting.items()}))
    return out


def summarize(rows: list[dict[str, Any]]) -> list[str]:
    """The grid against the targets, in words."""
    def share(part_rows: list[dict[str, Any]], lo: float, hi: float) -> str:
        ok = [r for r in part_rows if lo <= r["ratio"] <= hi]
        ratios = [r["ratio"] for r in part_rows if math.isfinite(r["ratio"])]
        span = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
        return f"{len(ok)}/{len(part_rows)} within {lo}-{hi} (ratios {span})"

    lines = [f"NeuroSim V1.3 grid: {len({(r['net'], r['config']) for r in rows})} configurations"]
    lines.append("total energy: " + share([r for r in rows if r["part"] == "total"], *TARGETS["total"]))
    for part in ENERGY_PARTS[1:] + AREA_PARTS[1:]:
        lines.append(f"{part}: " + share([r for r in rows if r["part"] == part], *TARGETS["part"]))
    lines.append("chip area: " + share([r for r in rows if r["part"] == "area chip"], *TARGETS["area chip"]))
    return lines


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Ours against NeuroSim per part, log-log, with the target bands."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [p for p in ENERGY_PARTS + AREA_PARTS if any(r["part"] == p for r in rows)]
    fig, axes = plt.subplots(2, math.ceil(len(parts) / 2), figsize=(3.2 * math.ceil(len(parts) / 2), 6.4))
    for ax, part in zip(axes.flat, parts):
        pts = [(r["neurosim"], r["ours"]) for r in rows if r["part"] == part and r["neurosim"] > 0 and r["ours"] > 0]
        if not pts:
            ax.set_visible(False)
            continue
        xs, ys = zip(*pts)
        lo, hi = min(xs + ys) / 2, max(xs + ys) * 2
        band = TARGETS["total"] if part == "total" else TARGETS["area chip"] if part == "area chip" else TARGETS["part"]
        ax.fill_between([lo, hi], [lo * band[0], hi * band[0]], [lo * band[1], hi * band[1]], color="0.9")
        ax.plot([lo, hi], [lo, hi], "k:", lw=0.8)
        ax.scatter(xs, ys, s=12)
        ax.set(xscale="log", yscale="log", title=part, xlabel="NeuroSim", ylabel="ours")
    for ax in list(axes.flat)[len(parts):]:
        ax.set_visible(False)
    fig.suptitle("cost model vs DNN+NeuroSim V1.3 (energy pJ, area mm²; grey: target band)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def run_grid(nets: Iterable[str], settings: list[dict[str, Any]], data_dir: str | None, log=print,
             checkpoint: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(comparison rows, NeuroSim's raw results) over nets x settings."""
    rows, raw = [], []
    for net in nets:
        for setting in settings:
            t0 = time.perf_counter()
            res = run_network(neurosim_config(setting), net, ifm="padded", data_dir=data_dir, log=log,
                              checkpoint=checkpoint)
            theirs = res["neurosim"]["chip"]
            raw.append(dict(net=net, setting=setting, neurosim=theirs, checkpoint=checkpoint))
            rows += rows_of(net, setting, our_report(net, setting, data_dir, checkpoint=checkpoint), theirs)
            total = next(r for r in rows[::-1] if r["part"] == "total")
            log(f"{net} {label(setting)}: ours / NeuroSim total {total['ratio']:.2f} "
                f"({time.perf_counter() - t0:.0f} s{', cached' if res.get('from_cache') else ''})")
    return rows, raw


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", nargs="+", default=["small", "vgg8"], choices=["small", "vgg8"],
                   help="networks (default: small on the whole grid, vgg8 at NeuroSim's default only)")
    p.add_argument("--full", action="store_true", help="the product of every setting instead of one axis at a time")
    p.add_argument("--from-results", default=None, help="a neurosim_grid.json written before: recompare without NeuroSim")
    p.add_argument("--data-dir", default=None, help="where Fashion-MNIST is (default: wxy_hw's search path)")
    p.add_argument("--checkpoint", default=None,
                   help="small: a wxy_hw checkpoint (e.g. a trained default ResNet-18) instead of the seeded VGG-11 w0.25")
    p.add_argument("--out", default=str(HERE / "results"), help="output folder (default validation/results)")
    args = p.parse_args(argv)
    out = Path(args.out)
    try:
        if args.from_results:
            raw = json.loads(Path(args.from_results).read_text())
            rows = [r for item in raw for r in rows_of(item["net"], item["setting"],
                                                         our_report(item["net"], item["setting"], args.data_dir,
                                                                    checkpoint=item.get("checkpoint")),
                                                         item["neurosim"])]
        else:
            settings = grid(args.full)
            rows, raw = [], []
            for net in args.nets:
                # VGG-8 takes ~2 min per NeuroSim run: the default grid runs it at NeuroSim's default setting only
                chosen = settings if (net == "small" or args.full) else [dict(DEFAULT)]
                r, w = run_grid([net], chosen, args.data_dir, checkpoint=args.checkpoint if net == "small" else None)
                rows, raw = rows + r, raw + w
    except NeuroSimError as exc:
        print(exc, file=sys.stderr)
        return 1
    atomic_write_text(out / "neurosim_grid.json", json.dumps(raw, indent=1))
    write_rows_csv(out / "neurosim_grid.csv", rows)
    plot(rows, out / "neurosim_grid.png")
    print("\n".join(summarize(rows)))
    print(f"wrote {out / 'neurosim_grid.csv'}, {out / 'neurosim_grid.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
