"""Pareto fronts over any number of objectives, and how two fronts compare (dominance, 2-D hypervolume).

A point is a dict; ``objectives`` maps its keys to "min" or "max". One front rule for every study: the chip
study's accuracy-vs-energy front and the co-design search's fronts are both ``non_dominated``.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence, TypeVar

Point = Mapping[str, Any]
P = TypeVar("P", bound=Mapping[str, Any])


def _signed(p: Point, objectives: Mapping[str, str]) -> tuple[float, ...]:
    """The point's objectives, each turned into one to minimise."""
    for k, d in objectives.items():
        if d not in ("min", "max"):
            raise ValueError(f"objective {k!r}: direction must be 'min' or 'max', got {d!r}")
    return tuple(float(p[k]) if d == "min" else -float(p[k]) for k, d in objectives.items())


def dominates(a: Point, b: Point, objectives: Mapping[str, str]) -> bool:
    """Whether ``a`` is at least as good as ``b`` in every objective and better in one."""
    sa, sb = _signed(a, objectives), _signed(b, objectives)
    return all(x <= y for x, y in zip(sa, sb)) and any(x < y for x, y in zip(sa, sb))


def non_dominated(points: Sequence[P], objectives: Mapping[str, str]) -> list[P]:
    """The points no other point dominates (one of several with equal objectives: the first), in input order;
    a point with a NaN objective is never on the front."""
    finite = [p for p in points if not any(math.isnan(v) for v in _signed(p, objectives))]
    front, seen = [], set()
    for p in finite:
        key = _signed(p, objectives)
        if key in seen or any(dominates(q, p, objectives) for q in finite):
            continue
        seen.add(key)
        front.append(p)
    return front


def dominated_share(points: Sequence[Point], by: Sequence[Point], objectives: Mapping[str, str]) -> float:
    """The fraction of ``points`` that some point of ``by`` dominates (NaN for no points)."""
    if not points:
        return float("nan")
    return sum(any(dominates(q, p, objectives) for q in by) for p in points) / len(points)


def hypervolume_2d(points: Sequence[Point], objectives: Mapping[str, str], reference: Point) -> float:
    """The area the points dominate up to ``reference`` (a point worse than all of them in both objectives): the
    larger, the better the front; two fronts compared on one reference."""
    if len(objectives) != 2:
        raise ValueError(f"hypervolume_2d needs two objectives, got {len(objectives)}")
    rx, ry = _signed(reference, objectives)
    front = sorted(_signed(p, objectives) for p in non_dominated(points, objectives))
    area, last_y = 0.0, ry
    for x, y in front:
        if x >= rx or y >= last_y:
            continue
        area += (rx - x) * (last_y - y)
        last_y = y
    return area
