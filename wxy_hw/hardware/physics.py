"""Device physics as pure tensor functions: weights → conductances → noisy conductances → weights.

Everything here is torch-native and device-agnostic (CPU or CUDA), takes an explicit
``torch.Generator`` so a chip instance is reproducible from its seed, and never touches a
module. The noise engine (``engine.py``) and hardware-aware training (``methods/hwa.py``)
share these functions, so training noise and deployment noise are the same model.

Conventions: a weight tensor is viewed as a matrix (out, fan_in) — for a convolution fan_in =
in_channels·kh·kw, the im2col row order. It is cut into crossbar tiles of ``array.rows`` inputs
× ``array.cols`` outputs; each tile maps its own |W|max onto g_max (per-tile weight scaling, as
in aihwkit with ``weight_scaling_omega``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .spec import WAN2022_TIMES_S, DeviceSpec

# Wan et al. 2022 (NeuRRAM) conductance-dependent σ(g) in µS, fitted at g_max = 40 µS by aihwkit's
# ReRamWan2022NoiseModel: σ = Σ_k c_k (g/g_max)^k, lowest order first, for three times after programming.
WAN2022_COEFFS = (
    (0.348, 16.030, -43.853, 45.393, -16.815),
    (0.701, 22.086, -50.773, 47.095, -16.458),
    (0.782, 20.274, -43.507, 37.062, -11.934),
)
WAN2022_G_REF = 40.0
# aihwkit PCMLikeNoiseModel (Nandakumar et al. 2019): programming σ(g) in µS at g_max = 25 µS.
PCM_PROG_COEFFS = (0.26348, 1.9650, -1.1731)
PCM_G_REF = 25.0
PCM_NU_REF = 0.05  # drift_nu_mean in a device file scales the model's ν relative to this


def poly(x: torch.Tensor, coeffs: tuple[float, ...]) -> torch.Tensor:
    """Σ_k c_k x^k (lowest order first)."""
    out = torch.full_like(x, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        out = out * x + c
    return out


def wan2022_sigma(g: torch.Tensor, g_max: float, t: float) -> torch.Tensor:
    """ReRAM σ(g) in µS at time t: the fits at 1 s, 1 day, 2 days, interpolated in log-time between them.

    Before 1 s the 1-s fit applies; beyond 2 days the caller must refuse (no data).
    """
    x = g / g_max
    scale = g_max / WAN2022_G_REF  # the fits are in µS at 40 µS; scale with the conductance range
    t = max(float(t), WAN2022_TIMES_S[0])
    for (t_lo, c_lo), (t_hi, c_hi) in zip(zip(WAN2022_TIMES_S, WAN2022_COEFFS),
                                          zip(WAN2022_TIMES_S[1:], WAN2022_COEFFS[1:])):
        if t <= t_hi:
            a = (math.log(t) - math.log(t_lo)) / (math.log(t_hi) - math.log(t_lo))
            if a in (0.0, 1.0):  # on a fitted time: one polynomial, the same value as the blend gives
                return scale * poly(x, c_lo if a == 0.0 else c_hi)
            return scale * ((1 - a) * poly(x, c_lo) + a * poly(x, c_hi))
    return scale * poly(x, WAN2022_COEFFS[-1])


def tile_ids(size: int, max_size: int, device: torch.device | None = None) -> torch.Tensor:
    """Tile index of each of ``size`` rows (or columns) split into balanced tiles of ≤ max_size.

    Balanced like aihwkit's TileModuleArray: 576 inputs on 256-row arrays → 3 tiles of 192.
    """
    n = -(-size // max_size)
    base, extra = divmod(size, n)
    sizes = torch.tensor([base + (i < extra) for i in range(n)], device=device)
    return torch.repeat_interleave(torch.arange(n, device=device), sizes)


def read_groups(size: int, rows: int, parallel_rows: int = 0, device: torch.device | None = None) -> torch.Tensor:
    """Read-group index of each of ``size`` rows: the rows one conversion sums (NeuroSim's parallelRead).

    Rows are cut into balanced crossbar tiles of ≤ ``rows`` (``tile_ids``); a chip that drives only
    ``parallel_rows`` rows at once reads each tile in consecutive groups of that many rows, each
    digitised on its own. ``parallel_rows`` 0 (or ≥ the tile) reads a whole tile at once: the groups are
    the tiles. Groups never straddle two tiles, and are numbered tile by tile.
    """
    tiles = tile_ids(size, rows, device)
    if not parallel_rows or parallel_rows >= int(torch.bincount(tiles).max()):
        return tiles
    start = torch.searchsorted(tiles, tiles, right=False)  # first row of each row's tile (tiles are sorted)
    local = torch.arange(size, device=device) - start
    key = tiles * (size + 1) + local // parallel_rows
    return torch.unique(key, return_inverse=True)[1]


def tile_abs_max(w2d: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Per-element |W|max of the crossbar tile the element lands in (shape of w2d)."""
    out_dim, fan_in = w2d.shape
    r = tile_ids(fan_in, rows, w2d.device)
    c = tile_ids(out_dim, cols, w2d.device)
    n_r = int(r[-1]) + 1
    ids = (c.view(-1, 1) * n_r + r.view(1, -1)).flatten()
    per_tile = torch.zeros(int(ids.max()) + 1, device=w2d.device, dtype=w2d.dtype)
    per_tile = per_tile.scatter_reduce(0, ids, w2d.abs().flatten(), reduce="amax", include_self=True)
    return per_tile[ids].view(out_dim, fan_in)


def tile_full_scale(w2d: torch.Tensor, spec: DeviceSpec, full_scale: float | None = None) -> torch.Tensor:
    """Per-element weight value mapped onto g_max: ``full_scale`` when given, else the tile's |W|max, clipped to
    ``mapping.clip_sigma`` standard deviations of the layer's weights when that is set."""
    m, arr = spec.mapping, spec.array
    w_max = (torch.full_like(w2d, float(full_scale)) if full_scale is not None
             else tile_abs_max(w2d, arr["rows"], arr["cols"]))
    if m["clip_sigma"] > 0:
        w_max = torch.minimum(w_max, m["clip_sigma"] * w2d.std())
    return w_max.clamp_min(1e-12)


@dataclass
class Programmed:
    """A programmed weight: effective value at the inference time and its per-read noise std."""

    weight: torch.Tensor
    read_sigma: torch.Tensor | None  # per element, weight units; None when there is no read noise
    w_max: torch.Tensor              # per-element tile |W|max used for the mapping


def is_ideal(spec: DeviceSpec, noise_scale: float = 1.0) -> bool:
    """True when deployment would leave weights and forward exactly as in the digital model."""
    n = spec.noise
    noisy = noise_scale > 0 and (n["programming"] != "none" or n["read_noise"] > 0 or n["additive_sigma"] > 0
                                 or spec.lognormal_sigma > 0 or n["stuck_at_lrs"] > 0 or n["stuck_at_hrs"] > 0)
    return not (noisy or spec.mapping["levels"] > 0 or spec.mapping["weight_bits"] > 0 or n["drift"] != "none"
                or spec.mapping["clip_sigma"] > 0
                or spec.ir_drop["beta"] > 0 or spec.array["adc_bits"] > 0 or spec.array["dac_bits"] > 0)


def quantize_unit(u: torch.Tensor, levels: int, differential: bool) -> torch.Tensor:
    """Round normalised weights u ∈ [-1, 1] to the device's conductance levels.

    Differential: each magnitude is one of ``levels`` values in [0, 1] (the other device of the
    pair sits at g_min); single device: u itself takes ``levels`` values across [-1, 1].
    """
    if differential:
        steps = levels - 1
        return torch.sign(u) * torch.round(u.abs() * steps) / steps
    steps = levels - 1
    return torch.round((u + 1) / 2 * steps) / steps * 2 - 1


def program_weight(w: torch.Tensor, spec: DeviceSpec, gen: torch.Generator, t_inference: float = 1.0,
                   noise_scale: float = 1.0, full_scale: float | None = None) -> Programmed:
    """Map one weight tensor onto the device, program it, let it drift to ``t_inference``, read it back.

    Each effect draws from its own stream derived from ``gen`` (faults, programming, drift and
    1/f, mismatch, additive), so one generator state gives one chip at every inference time.
    """
    prog = program_chips(w, spec, [gen], t_inference, noise_scale, full_scale)
    return Programmed(prog.weight[0], None if prog.read_sigma is None else prog.read_sigma[0], prog.w_max[0])


def _chip_draw(fn, shape: torch.Size, gens: list[torch.Generator], like: torch.Tensor) -> torch.Tensor:
    """One draw of ``shape`` per chip from that chip's own stream, stacked along a leading chip dim."""
    return torch.stack([fn(shape, generator=g, device=like.device, dtype=like.dtype) for g in gens])


def program_chips(w: torch.Tensor, spec: DeviceSpec, gens: list[torch.Generator], t_inference: float = 1.0,
                  noise_scale: float = 1.0, full_scale: float | None = None) -> Programmed:
    """``program_weight`` for K chips at once: one generator per chip, results stacked as (K, *w.shape).

    The mapping (tile |W|max, levels, target conductances) is computed once; every random draw
    comes from chip k's own streams with the shape and order of the one-chip path, and the
    arithmetic is elementwise, so chip k is the chip ``program_weight(w, spec, gens[k])`` gives.
    """
    k = len(gens)
    if is_ideal(spec, noise_scale):
        return Programmed(w.expand(k, *w.shape), None, w.detach().abs().amax().expand(k, *w.shape))
    m, n = spec.mapping, spec.noise
    s = float(noise_scale)
    w2 = w.detach().reshape(w.shape[0], -1).float()
    # full_scale fixes the value mapped onto g_max (bit slices: the largest digit), else each tile's |W|max
    w_max = tile_full_scale(w2, spec, full_scale)
    u = (w2 / w_max).clamp(-1, 1)
    levels = m["levels"] ** m["cells_per_weight"] if m["levels"] else 0
    if levels:
        u = quantize_unit(u, levels, m["differential"])
    g_max, g_min = m["g_max_uS"], spec.g_min_uS
    span = g_max - g_min
    if m["differential"]:
        targets = [g_min + span * u.clamp(min=0), g_min + span * (-u).clamp(min=0)]
    else:
        targets = [g_min + span * (u + 1) / 2]

    t = float(t_inference)
    # One sub-stream per physical effect: the chip drawn for a seed is the same chip at every
    # inference time (drift-only draws cannot shift the programming noise), so time sweeps use
    # common random numbers.
    streams = []
    for gen in gens:
        keys = torch.randint(0, 2**62, (5,), generator=gen, device=gen.device).tolist()
        streams.append([torch.Generator(device=w.device).manual_seed(key) for key in keys])
    g_fault, g_prog, g_drift, g_ln, g_add = ([st[i] for st in streams] for i in range(5))
    shape2 = w2.shape
    programmed, at_t0 = [], []
    for g_t in targets:
        g = g_t
        if n["stuck_at_lrs"] > 0 or n["stuck_at_hrs"] > 0:
            r = _chip_draw(torch.rand, shape2, g_fault, g)
            p_lrs, p_hrs = min(n["stuck_at_lrs"] * s, 1.0), min(n["stuck_at_hrs"] * s, 1.0)
            g = torch.where(r < p_lrs, torch.full_like(g, g_max), g)
            g = torch.where((r >= p_lrs) & (r < p_lrs + p_hrs), torch.full_like(g, g_min), g)
        prog = n["programming"]
        g0 = g
        if prog == "wan2022":
            # Relaxation: the state at time t is drawn around the target with the σ fitted at t (as in
            # Wan et al. / aihwkit); the 1-s fit is the programming noise itself.
            xi = _chip_draw(torch.randn, shape2, g_prog, g)
            sig_1 = wan2022_sigma(g, g_max, 1.0)
            sig_t = sig_1 if t <= WAN2022_TIMES_S[0] else wan2022_sigma(g, g_max, t)
            g0 = (g + s * n["programming_scale"] * sig_1 * xi).clamp(min=0)
            g = (g + s * n["programming_scale"] * sig_t * xi).clamp(min=0)
        elif prog == "pcm_poly":
            sig = poly(g / g_max, PCM_PROG_COEFFS) * (g_max / PCM_G_REF)
            g = (g + s * n["programming_scale"] * sig * _chip_draw(torch.randn, shape2, g_prog, g)).clamp(min=0)
            g0 = g
        elif prog == "relative":
            g = (g + s * n["programming_scale"] * span * _chip_draw(torch.randn, shape2, g_prog, g)).clamp(min=0)
            g0 = g
        if n["drift"] == "pcm_power_law":
            g = pcm_drift(g, g_t, g_max, t, n, s, g_drift)
        sigma_ln = spec.lognormal_sigma * s
        if sigma_ln > 0:
            factor = torch.exp(sigma_ln * _chip_draw(torch.randn, shape2, g_ln, g_t))
            g, g0 = g * factor, g0 * factor
        programmed.append(g.expand(k, *shape2))
        at_t0.append(g0.expand(k, *shape2))

    def back(gs: list[torch.Tensor]) -> torch.Tensor:
        if m["differential"]:
            return (gs[0] - gs[1]) / span * w_max
        return ((gs[0] - g_min) / span * 2 - 1) * w_max

    w_out = back(programmed)
    if n["drift_compensation"] and n["drift"] != "none":
        # Global drift compensation (as aihwkit's GlobalDriftCompensation): rescale by the ratio of the
        # all-ones read-out right after programming to the read-out at time t, per chip.
        # (per chip on its 2-D matrix, so the reduction order, hence the value, is the one-chip one)
        before = back(at_t0)
        w_out = torch.stack([w_out[i] * (before[i].sum(1).abs().sum() / w_out[i].sum(1).abs().sum().clamp_min(1e-12))
                             for i in range(k)])
    if n["additive_sigma"] > 0:
        w_out = w_out + s * n["additive_sigma"] * w_max * _chip_draw(torch.randn, shape2, g_add, w_out)
    read = s * n["read_noise"] * w_max if n["read_noise"] > 0 and s > 0 else None
    shape = (k, *w.shape)
    return Programmed(w_out.reshape(shape).to(w.dtype),
                      None if read is None else read.to(w.dtype).expand(k, *shape2).reshape(shape),
                      w_max.to(w.dtype).expand(k, *shape2).reshape(shape))


def pcm_drift(g_prog: torch.Tensor, g_target: torch.Tensor, g_max: float, t: float, n: dict, s: float,
              gens: list[torch.Generator]) -> torch.Tensor:
    """PCM power-law drift g·((t+t0)/t0)^(−ν) with state-dependent ν spread, plus accumulated 1/f noise.

    Follows aihwkit's PCMLikeNoiseModel (Nandakumar et al. 2019); ν statistics are drawn from
    the target state, the 1/f amplitude from the programmed state. ``g_prog`` has a leading chip
    dim, one generator per chip in ``gens``; ``g_target`` is shared by the chips.
    """
    x = (g_target / g_max).abs().clamp_min(1e-7)
    mu = (-0.0155 * torch.log(x) + 0.0244).clamp(0.049, 0.1)
    sd = (-0.0125 * torch.log(x) - 0.0059).clamp(0.008, 0.045)
    nu = (mu + s * sd * _chip_draw(torch.randn, x.shape, gens, x)).abs() * (n["drift_nu_mean"] / PCM_NU_REF)
    t0 = n["t0_s"]
    g_prog = g_prog.expand(len(gens), *x.shape)
    # powers are taken chip by chip: a vectorised pow's last bits depend on where an element sits,
    # and each chip must come out exactly as when it is programmed alone
    g = g_prog * torch.stack([((t + t0) / t0) ** (-v) for v in nu]) if t > 0 else g_prog
    if t > 0:
        q = (0.0088 / torch.stack([(gp.abs() / g_max) ** 0.65 for gp in g_prog]).clamp(min=1e-3)).clamp(max=0.2)
        # accumulated since the end of programming, counted from t0 as in aihwkit
        sig = q * math.sqrt(math.log((t + t0 + n["t_read_s"]) / (2 * n["t_read_s"])))
        g = g + g.abs() * s * sig * _chip_draw(torch.randn, x.shape, gens, g)
    return g.clamp(min=0)


def slicing(weight_bits: int, levels: int) -> tuple[int, int]:
    """(bits per cell, cells per weight) to hold a signed ``weight_bits`` integer on ``levels``-level cells.

    The sign goes to the differential pair, so weight_bits − 1 magnitude bits are cut into
    ⌊log2 levels⌋-bit digits, one cell pair each; a continuous cell (``levels`` 0) holds them all.
    """
    if levels < 2:
        return max(weight_bits - 1, 1), 1
    per_cell = max(int(math.floor(math.log2(levels))), 1)
    return per_cell, max(math.ceil((weight_bits - 1) / per_cell), 1)


def program_sliced_float(w: torch.Tensor, spec: DeviceSpec, gens: list[torch.Generator], t_inference: float = 1.0,
                         noise_scale: float = 1.0) -> Programmed:
    """``program_chips`` for a chip that bit-slices float weights (``mapping.weight_bits`` > 0).

    Each crossbar tile maps its |W|max (clipped as ``mapping.clip_sigma`` says) onto the largest signed
    ``weight_bits``-bit integer; the integers are programmed digit by digit (``program_bit_sliced``, the
    path of Brevitas layers) on cells of ``mapping.levels`` levels, one chip per generator, stacked.
    """
    bits = int(spec.mapping["weight_bits"])
    w2 = w.detach().reshape(w.shape[0], -1).float()
    w_max = tile_full_scale(w2, spec)
    top = 2 ** (bits - 1) - 1
    scale = w_max / top
    ints = torch.round((w2 / w_max).clamp(-1, 1) * top).to(torch.int64)
    progs = [program_bit_sliced(ints, scale, bits, spec, g, t_inference, noise_scale) for g in gens]
    reads = [p.read_sigma for p in progs if p.read_sigma is not None]  # every chip's or none (one spec)
    shape = (len(gens), *w.shape)
    return Programmed(torch.stack([p.weight for p in progs]).reshape(shape).to(w.dtype),
                      torch.stack(reads).reshape(shape).to(w.dtype) if reads else None,
                      torch.stack([p.w_max for p in progs]).reshape(shape).to(w.dtype))


def program_bit_sliced(int_weight: torch.Tensor, scale: torch.Tensor, weight_bits: int, spec: DeviceSpec,
                       gen: torch.Generator, t_inference: float = 1.0, noise_scale: float = 1.0) -> Programmed:
    """Program an integer weight (W = scale · int) as bit slices, each digit on its own cell pair.

    Digit s (LSB first, k bits) sits on a cell pair at level |digit| with the integer's sign; each
    slice gets the device's noise independently (its own random streams) and the read-out
    recombines them as W = scale · Σ_s 2^(k·s) · slice_s, so noise on a low-order slice costs
    proportionally less. Read noise adds in quadrature across slices.
    """
    k, cells = slicing(weight_bits, spec.mapping["levels"])
    digit_max = 2 ** k - 1
    sign = torch.sign(int_weight.float())
    mag = int_weight.abs().to(torch.int64)
    total = torch.zeros_like(int_weight, dtype=torch.float32)
    read_var = torch.zeros_like(total)
    # a slice maps its own largest digit onto g_max: no per-slice clipping (the caller clipped the weight once)
    plain = spec.with_overrides({"mapping.levels": 0, "mapping.cells_per_weight": 1, "mapping.weight_bits": 0,
                                 "mapping.clip_sigma": 0.0})
    magnitude_bits = weight_bits - 1
    for s in range(cells):
        digit = ((mag >> (k * s)) & digit_max).float() * sign
        # the top slice holds only the remaining bits: map its own largest digit onto g_max, so it
        # uses the whole conductance range (e.g. 3 magnitude bits of a 4-bit weight on 16 levels)
        slice_max = 2 ** min(k, magnitude_bits - k * s) - 1
        prog = program_weight(digit, plain, gen, t_inference, noise_scale, full_scale=slice_max)
        weight = float(2 ** (k * s))
        total = total + weight * prog.weight.float()
        if prog.read_sigma is not None:
            read_var = read_var + (weight * prog.read_sigma.float()) ** 2
    scale = scale.float()
    read = (read_var.sqrt() * scale) if bool((read_var > 0).any()) else None
    w_max = (scale * (2 ** (weight_bits - 1) - 1)).expand_as(total)
    return Programmed(total * scale, read, w_max)
