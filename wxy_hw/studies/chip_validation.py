"""``chip_study --validate``: the cost model beside numbers nobody here computed (NeuroSim's VGG-8, measured
macros), each with its source; the reference network and the published values live here, not in the cost model."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypedDict

import torch
import torch.nn as nn

from ..hardware import ChipConfig, chip_report
from ..hardware.cost import cells_per_weight
from ..output import format_table, write_rows_csv
from .config import StudyConfig
from .spine import StudyResult, stamp, start_run


class NeuroSimPoint(TypedDict):
    """One published NeuroSim VGG-8 point: rows read in parallel, TOPS/W, chip area, where it is published."""

    parallel_rows: int
    tops_per_w: float
    area_mm2: float
    source: str


class MeasuredMacro(TypedDict):
    """A measured macro: what it is, its TOPS/W, the workload (inputs, outputs; None: the array), the energy
    parts the measurement covers, the ChipConfig settings that describe it, and the source."""

    reference: str
    tops_per_w: float
    layer: tuple[int, int] | None
    parts: tuple[str, ...]
    cfg: dict[str, Any]
    source: str


# NeuroSim's published VGG-8 / CIFAR-10 points (22 nm RRAM 1T1R, 128×128, 4-bit ADC, 8 columns per ADC,
# 8-bit weights and activations, 1 bit per cell). Two releases of DNN_NeuroSim_V1.4 disagree with each
# other (see docs/results.md): the updated manual's Table VII and the release's own results file.
NEUROSIM_MANUAL = "DNN_NeuroSim_V1.4 Documents/User Manual (v3_updated_1229), Table VII (RRAM, 22 nm, 8b x 8b)"
NEUROSIM_CSV = "DNN_NeuroSim_V1.4 first commit 9e6742c, Data/1.4_Release_test.csv (RRAM, 22 nm, on/off 17)"
NEUROSIM_VGG8: list[NeuroSimPoint] = [
    dict(parallel_rows=32, tops_per_w=11.25, area_mm2=381.90, source=NEUROSIM_MANUAL),
    dict(parallel_rows=64, tops_per_w=19.88, area_mm2=378.06, source=NEUROSIM_MANUAL),
    dict(parallel_rows=64, tops_per_w=20.06, area_mm2=83.07, source=NEUROSIM_CSV),
    dict(parallel_rows=128, tops_per_w=23.94, area_mm2=84.77, source=NEUROSIM_CSV),
]
NEUROSIM_INPUT_TOGGLE = 0.18  # DNN_NeuroSim_V1.4 Param.cpp: measured input-bit activity of VGG-8
# NeuroSim V1.4's area breakdown at 128 parallel rows (the results file): the parts we model vs. those we do not
NEUROSIM_AREA_MODELLED = 3.61 + 5.06 + 15.06       # array + ADC + accumulation, mm²
NEUROSIM_AREA_LEFT_OUT = 52.74 + 8.30              # "other peripheries" (switch matrices, level shifters, decoders,
                                                   # muxes, PE/tile/global buffers, pooling, activation) + interconnect
MACRO_PARTS = ("array", "adc", "dac", "digital", "buffer", "interconnect", "leakage")

# Measured silicon, configured as the papers describe; one MVM workload that fills the macro. ``parts``: the
# energy parts the paper's measurement covers; ``layer``: (inputs, outputs) of the workload (None: the array).
MEASURED_MACROS: list[MeasuredMacro] = [
    dict(reference="Wan et al., Nature 2022 (NeuRRAM), 130 nm, 4-bit inputs / 6-bit outputs / 4-bit weights",
         tops_per_w=15.95, layer=(128, 256), parts=("array", "adc", "dac", "leakage"),
         cfg=dict(device="reram", rows=256, cols=256, adc_bits=6, dac_bits=3, weight_bits=4, act_bits=3,
                  bits_per_cell=3, differential=True, cols_per_adc=1, technology="cmos130"),
         source="Extended Data Fig. 12 (TOPS/W vs. input/output bits) as reproduced by CiMLoop's model of the chip "
                "(mit-emze/cimloop workspace/models/arch/1_macro/wan_nature_2022, _tests.py test_tops); 256x256 1T1R "
                "core, differential pair on adjacent rows (128 inputs x 256 outputs), one neuron per column, a signed "
                "4-bit input as 3 magnitude bits driven as 2^3-1 pulses in one phase and one 6-bit conversion (Fig. 2, "
                "Extended Data Fig. 4); buffers and partial-sum accumulation sit on the FPGA, outside the measured "
                "energy; periphery from cmos130.toml (scaled from 22 nm, not fitted)"),
    dict(reference="Wan et al., Nature 2022 (NeuRRAM), 130 nm, 6-bit inputs in 2 phases / 8-bit outputs / 4-bit weights",
         tops_per_w=9.12, layer=(128, 256), parts=("array", "adc", "dac", "leakage"),
         cfg=dict(device="reram", rows=256, cols=256, adc_bits=8, dac_bits=3, weight_bits=4, act_bits=5,
                  bits_per_cell=3, differential=True, cols_per_adc=1, technology="cmos130"),
         source="as the 4-bit row (Extended Data Fig. 12 via CiMLoop's test_tops, 2-phase value); the 5 magnitude bits "
                "in two phases of up to 3 bits, each phase converted once (our reading of the 2-phase scheme)"),
    dict(reference="Xue et al., ISSCC 2021 (16.1), 22 nm 4 Mb ReRAM CIM macro", tops_per_w=11.91, layer=None,
         parts=MACRO_PARTS,
         cfg=dict(device="reram", rows=256, cols=256, adc_bits=8, dac_bits=1, weight_bits=8, act_bits=8,
                  bits_per_cell=1, differential=True, cols_per_adc=8),
         source="title/abstract: 11.91 TOPS/W at 8-bit inputs and 8-bit weights (doi 10.1109/ISSCC42613.2021.9365769); "
                "array 256x256, 1 bit/cell, 8-bit ADC per 8 columns: our assumption, not from the paper"),
    dict(reference="Wen et al., VLSI 2023, 28 nm 4 Mb ReRAM near-memory-compute processor", tops_per_w=27.2,
         layer=None, parts=MACRO_PARTS,
         cfg=dict(device="reram", rows=256, cols=256, adc_bits=4, dac_bits=1, weight_bits=8, act_bits=8,
                  bits_per_cell=1, differential=False, cols_per_adc=8),
         source="title: 27.2 TOPS/W (8-bit inputs/weights, 4-bit ADC shared by 8 columns, bit-serial inputs: "
                "as a public ZigZag-IMC model of this chip describes it); 22 nm technology file used for 28 nm"),
]


def validation_rows(device: str = "reram") -> list[dict[str, Any]]:
    """Our chip model beside published numbers: reference, metric, reference_value, model_value, ratio (model / reference), source."""
    torch.manual_seed(0)  # NeuroSim's VGG-8 with seeded random weights: they set the cells' conductance states
    vgg = NeuroSimVGG8()
    rows: list[dict[str, Any]] = []
    for ref in NEUROSIM_VGG8:
        cfg = ChipConfig(device=device, rows=128, cols=128, adc_bits=4, dac_bits=1, weight_bits=8, act_bits=8,
                         bits_per_cell=1, parallel_rows=ref["parallel_rows"], differential=False,
                         input_activity=NEUROSIM_INPUT_TOGGLE)
        ours = chip_report(vgg, cfg, (3, 32, 32))["chip"]
        name = f"NeuroSim V1.4 VGG-8, {ref['parallel_rows']} rows in parallel"
        rows.append(dict(reference=name, metric="TOPS/W", reference_value=ref["tops_per_w"],
                         model_value=ours["tops_per_w"], ratio=ours["tops_per_w"] / ref["tops_per_w"],
                         source=ref["source"]))
        rows.append(dict(reference=name, metric="chip area mm2", reference_value=ref["area_mm2"],
                         model_value=ours["area_mm2"], ratio=ours["area_mm2"] / ref["area_mm2"],
                         source=ref["source"] + "; not modelled: NeuroSim's other peripheries and interconnect "
                         f"({NEUROSIM_AREA_LEFT_OUT:.1f} mm2 in the results file) and its weight duplication"))
        if ref["source"] == NEUROSIM_CSV and ref["parallel_rows"] == 128:
            modelled = sum(ours[f"area_{p}_mm2"] for p in ("array", "adc", "drivers", "digital", "tile_buffers"))
            rows.append(dict(reference=name, metric="area mm2 of array + ADC + accumulation",
                             reference_value=NEUROSIM_AREA_MODELLED, model_value=modelled,
                             ratio=modelled / NEUROSIM_AREA_MODELLED,
                             source=NEUROSIM_CSV + ": array 3.61, ADC 5.06, accumulation 15.06 mm2"))
    for macro in MEASURED_MACROS:
        c = ChipConfig(**macro["cfg"], input_activity=0.5)
        resolved = c.resolve().config
        assert resolved.rows is not None and resolved.cols is not None  # resolve() fills the array size
        inputs, outputs = macro["layer"] or (resolved.rows, resolved.cols // cells_per_weight(c))
        layer = nn.Linear(inputs, outputs, bias=False)
        torch.nn.init.uniform_(layer.weight, -1, 1)
        ours = chip_report(layer, c, (inputs,))["chip"]
        tops_per_w = 2 * ours["macs"] / sum(ours[f"{part}_pJ"] for part in macro["parts"])
        rows.append(dict(reference=macro["reference"], metric="TOPS/W", reference_value=macro["tops_per_w"],
                         model_value=tops_per_w, ratio=tops_per_w / macro["tops_per_w"], source=macro["source"]))
    return rows


@dataclass
class ValidationConfig(StudyConfig):
    """``chip_study --validate``: nothing to set; the reference values are in the code and cited in validation.csv."""

    KIND = "chip_validation"


def validation_table(rows: list[dict[str, Any]]) -> str:
    """The validation rows as a table (their sources stay in validation.csv)."""
    return format_table([{k: v for k, v in r.items() if k != "source"} for r in rows],
                        ["reference", "metric", "reference_value", "model_value", "ratio"],
                        title="Validation of the cost model (ratio = model / reference; sources in validation.csv)")


def validate(out: str | Path | None = None, log: Callable[[str], None] = print) -> StudyResult:
    """``chip_study.py --validate``: print the validation table and write validation.csv."""
    out, run = start_run(ValidationConfig(), out, Path("runs") / "chip_study" / f"validate_{stamp()}", {"validate": True})
    rows = validation_rows()
    write_rows_csv(out / "validation.csv", rows)
    table = validation_table(rows)
    run.finish()
    return StudyResult(out, table, rows)


class NeuroSimVGG8(nn.Module):
    """NeuroSim's VGG-8 for CIFAR-10 (NetWork.csv): 2×conv128, pool, 2×conv256, pool, 2×conv512, pool, fc1024, fc10."""

    def __init__(self) -> None:
        super().__init__()
        chans = [(3, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512)]
        layers: list[nn.Module] = []
        for i, (ci, co) in enumerate(chans):
            layers += [nn.Conv2d(ci, co, 3, padding=1, bias=False), nn.ReLU()]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8192, 1024, bias=False), nn.ReLU(),
                                        nn.Linear(1024, 10, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
