"""Noise sweeps on a device: accuracy / loss per exit vs noise scale, vs time, and the flat-minima curve."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from ..hardware.montecarlo import chip_ids, evaluate_chips, summarize_chips as summarize  # noqa: F401 (re-export)
from ..hardware.spec import DeviceSpec
from ..utils import warn_deprecated
from .flatness import gaussian_weight_noise_loss

DEFAULT_SCALES = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
DEFAULT_TIMES = (1.0, 3600.0, 86400.0, 2592000.0, 31536000.0)  # 1 s, 1 h, 1 day, 30 days, 1 year
DEFAULT_SIGMAS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15)


def human_time(seconds: float) -> str:
    """1 s, 1 h, 1 day, 30 days, 1 year — the way people talk about retention."""
    for unit, size in (("year", 31536000.0), ("day", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            n = seconds / size
            text = f"{n:g}" if n == int(n) else f"{n:.1f}"
            return f"{text} {unit}" + ("s" if unit in ("year", "day") and n != 1 else "")
    return f"{seconds:g} s"


def sweep_device(models: dict[str, nn.Module], spec: DeviceSpec, batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                 *, scales: Sequence[float], times: Sequence[float], t_inference: float | None = None,
                 chips: int | None = None, seed: int = 0, backend: str = "native", bn_images: torch.Tensor | None = None,
                 progress: Callable[[str], None] | None = None, workers: int = 1, ray_address: str | None = None,
                 **deploy_kwargs: Any) -> list[dict[str, Any]]:
    """Raw rows (method × sweep × value × chip × exit): the scale sweep at ``t_inference`` and the time sweep at scale 1.

    ``chips`` chip instances per point (the former ``realizations=`` and ``t_nominal=`` still work, with a warning).

    Chip seeds are shared across methods and sweep points (common random numbers), so differences
    between methods are not masked by chip-to-chip variation. With ``bn_images`` every method gets a
    second series, "<method> + BN recal": the same chips with their BN statistics re-estimated
    through the chip on those unlabeled images. ``workers`` > 1 or ``ray_address`` run the
    independent points (method × series × sweep value × chip chunk) as Ray tasks
    (``wxy_hw.parallel``); the rows, and their order, are those of the sequential run.
    """
    for old, new in (("t_nominal", "t_inference"), ("realizations", "chips")):
        if old in deploy_kwargs:
            warn_deprecated(f"sweep_device({old}=...)", f"sweep_device({new}=...)")
            if new == "chips":
                chips = deploy_kwargs.pop(old)
            else:
                t_inference = deploy_kwargs.pop(old)
    if t_inference is None or chips is None:
        raise TypeError("sweep_device needs t_inference= and chips=")
    t_nominal = t_inference
    seeds = chip_ids(seed, chips)
    points = []
    for base in models:
        for name, recal in [(base, False)] + ([(f"{base} + BN recal", True)] if bn_images is not None else []):
            points += [(base, name, recal, "scale", scale, t_nominal) for scale in scales]
            points += [(base, name, recal, "time", 1.0, t) for t in (times if spec.has_drift else [])]
    parallel = workers > 1 or bool(ray_address)
    # enough tasks to keep every worker busy: split the chips of a point when points are few
    chunks = max(1, min(len(seeds), -(-2 * workers // max(len(points), 1)))) if parallel else 1
    size = -(-len(seeds) // chunks)
    tasks = [(*p, seeds[i:i + size]) for p in points for i in range(0, len(seeds), size)]
    context = dict(models=models, spec=spec, batches=batches, backend=backend, bn_images=bn_images,
                   deploy_kwargs=deploy_kwargs)
    if parallel:
        from ..parallel import parallel_map, runs_on_ray

        if progress:
            progress(f"{len(tasks)} sweep points as {runs_on_ray(workers, ray_address)}")

        results = parallel_map(_sweep_point, context, tasks, workers=workers, ray_address=ray_address)
    else:
        results = []
        for task in tasks:
            if progress:
                _, name, _, sweep, scale, t, _ = task
                progress(f"{name}: noise scale {scale:g} × nominal at t = {t:g} s" if sweep == "scale"
                         else f"{name}: t = {t:g} s at nominal noise")
            results.append(_sweep_point(context, task))
    return [r for rows in results for r in rows]


def _sweep_point(context: dict[str, Any], task: tuple) -> list[dict[str, Any]]:
    """Rows of one sweep point (one method, series, value and chunk of chips): one task of sweep_device."""
    base, name, recal, sweep, scale, t, seeds = task
    rows = evaluate_chips(context["models"][base], context["spec"], context["batches"], seeds,
                          backend=context["backend"], t_inference=t, noise_scale=scale,
                          bn_images=context["bn_images"] if recal else None, **context["deploy_kwargs"])
    return [dict(method=name, sweep=sweep, scale=scale, t_inference=t, **r) for r in rows]


def flat_minima(models: dict[str, nn.Module], batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                sigmas: Sequence[float] = DEFAULT_SIGMAS, chips: int = 3, seed: int = 0) -> list[dict[str, Any]]:
    """Accuracy and loss under plain additive Gaussian weight noise (σ × per-layer |W|max), per method and exit,
    over ``chips`` noise draws per σ (the study's --chips)."""
    rows = []
    for name, model in models.items():
        for r in gaussian_weight_noise_loss(model, batches, list(sigmas), realizations=chips, seed=seed):
            rows.append(dict(method=name, **r))
    return rows
