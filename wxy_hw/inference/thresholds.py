"""Per-exit threshold search on the validation split, with pymoo (GA and NSGA-II).

The model runs once on the validation images (all exits); every candidate threshold vector is
then scored exactly and cheaply from the cached per-exit confidences and correctness, since a
sample's exit depends only on them. Never run this on the test split: thresholds are model
selection.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from .early_exit import confidence


@dataclass
class ExitTable:
    """Per-sample, per-exit confidence and correctness, and the cost of leaving at each exit."""

    confidence: np.ndarray   # (N, E)
    correct: np.ndarray      # (N, E) bool; the last column uses the final rule (deepest or ensemble)
    path_cost: np.ndarray    # (E,) cost (MACs or pJ) of leaving at exit k, earlier heads included
    full_cost: float         # cost of the plain network: backbone + deepest head only

    @property
    def num_exits(self) -> int:
        """Number of exits E."""
        return self.confidence.shape[1]


@torch.no_grad()
def exit_table(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
               path_cost: Sequence[float], full_cost: float, *, kind: str = "max_softmax",
               final: str = "deepest") -> ExitTable:
    """Run every exit once on (validation) batches and cache what threshold scoring needs."""
    model.eval()
    dev = next(model.parameters()).device
    confs, correct = [], []
    for x, y in batches:
        x, y = x.to(dev), y.to(dev)
        out = model(x)
        logits = list(out.logits)
        if final == "ensemble":
            logits[-1] = out.ensemble
        confs.append(torch.stack([confidence(z, kind) for z in logits], 1).cpu())
        correct.append(torch.stack([z.argmax(1) == y for z in logits], 1).cpu())
    return ExitTable(torch.cat(confs).numpy(), torch.cat(correct).numpy(), np.asarray(path_cost, dtype=np.float64),
                     float(full_cost))


def _exits_for(table: ExitTable, thresholds: np.ndarray) -> np.ndarray:
    """(P, N) exit index per candidate row of thresholds (P, E−1)."""
    thr = np.atleast_2d(thresholds)
    hit = table.confidence[None, :, :-1] >= thr[:, None, :]                     # (P, N, E−1)
    hit = np.concatenate([hit, np.ones(hit.shape[:2] + (1,), dtype=bool)], axis=2)
    return hit.argmax(axis=2)                                                   # first exit that fires


def simulate(table: ExitTable, thresholds: Sequence[float] | np.ndarray) -> dict[str, float | list[float]]:
    """Accuracy (%), mean cost, acceleration and exit shares of one threshold vector."""
    exits = _exits_for(table, np.asarray(thresholds, dtype=np.float64))[0]
    n = len(exits)
    acc = table.correct[np.arange(n), exits].mean() * 100.0
    cost = table.path_cost[exits].mean()
    shares = np.bincount(exits, minlength=table.num_exits) / n
    return {"accuracy": float(acc), "mean_cost": float(cost), "acceleration": table.full_cost / float(cost),
            "exit_shares": shares.tolist()}


def _scores(table: ExitTable, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    exits = _exits_for(table, X)
    n = exits.shape[1]
    acc = table.correct[np.arange(n)[None, :], exits].mean(1) * 100.0
    cost = table.path_cost[exits].mean(1)
    return acc, cost


def search_thresholds(table: ExitTable, *, min_accuracy: float | None = None, pop_size: int = 60,
                      generations: int = 60, seed: int = 0) -> dict:
    """Single-objective GA (as in SCAN): least mean cost subject to accuracy ≥ the deepest exit's."""
    from pymoo.algorithms.soo.nonconvex.ga import GA
    from pymoo.core.problem import Problem
    from pymoo.optimize import minimize

    target = float(table.correct[:, -1].mean() * 100.0) if min_accuracy is None else float(min_accuracy)

    class Acceleration(Problem):
        def __init__(self) -> None:
            super().__init__(n_var=table.num_exits - 1, n_obj=1, n_ieq_constr=1, xl=0.0, xu=1.0)

        def _evaluate(self, X, out, *args, **kwargs):
            acc, cost = _scores(table, X)
            out["F"] = cost[:, None]
            out["G"] = (target - acc)[:, None]

    res = minimize(Acceleration(), GA(pop_size=pop_size, eliminate_duplicates=True), ("n_gen", generations),
                   seed=seed, verbose=False)
    if res.X is None:  # nothing feasible: never exit early, which meets the deepest exit by definition
        thresholds = np.full(table.num_exits - 1, 1.1)
    else:
        thresholds = np.asarray(res.X, dtype=np.float64).reshape(-1)
    return {"thresholds": thresholds.tolist(), "target_accuracy": target, **simulate(table, thresholds)}


def nsga2_front(table: ExitTable, *, pop_size: int = 80, generations: int = 80, seed: int = 0) -> list[dict]:
    """Accuracy vs cost Pareto front (NSGA-II), sorted by cost."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.optimize import minimize

    class Front(Problem):
        def __init__(self) -> None:
            super().__init__(n_var=table.num_exits - 1, n_obj=2, xl=0.0, xu=1.0)

        def _evaluate(self, X, out, *args, **kwargs):
            acc, cost = _scores(table, X)
            out["F"] = np.column_stack([-acc, cost])

    res = minimize(Front(), NSGA2(pop_size=pop_size), ("n_gen", generations), seed=seed, verbose=False)
    points = [{"thresholds": np.asarray(x).tolist(), **simulate(table, x)} for x in np.atleast_2d(res.X)]
    return sorted(points, key=lambda p: p["mean_cost"])
