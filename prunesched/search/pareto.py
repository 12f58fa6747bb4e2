"""Two-objective Pareto fronts, hypervolume, and picking one point from a front.

Both objectives are minimised (quality loss such as FID, and cost such as latency).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np

Points: TypeAlias = Sequence[Sequence[float]] | np.ndarray
"""Points in the plane: a sequence of (first objective, second objective), or an array of shape (n, 2)."""


def front_indices(points: Points) -> list[int]:
    """Indices of the non-dominated points, sorted by the first objective; exact duplicates keep the first."""
    array = np.asarray(points, dtype=float).reshape(-1, 2)
    order = sorted(range(len(array)), key=lambda i: (array[i, 0], array[i, 1], i))
    front, best = [], np.inf
    for i in order:
        if array[i, 1] < best:
            front.append(i)
            best = array[i, 1]
    return front


def hypervolume(points: Points, reference: Sequence[float]) -> float:
    """Area dominated by ``points`` and bounded by ``reference`` (points beyond it add nothing)."""
    array = np.asarray(points, dtype=float).reshape(-1, 2)
    ref = np.asarray(reference, dtype=float)
    inside = array[np.all(array < ref, axis=1)]
    area, previous_y = 0.0, ref[1]
    for i in front_indices(inside):
        x, y = inside[i]
        area += (ref[0] - x) * (previous_y - y)
        previous_y = y
    return float(area)


def pick_weighted(points: Points, weight: float) -> int:
    """Index of the point with the smallest ``quality + weight * cost`` (the score of DaTo's Algorithm 1).

    A decision on a finished front, not a search objective: the search keeps two objectives.
    Ties go to the cheaper point.
    """
    array = np.asarray(points, dtype=float).reshape(-1, 2)
    if not len(array):
        raise ValueError("cannot pick from an empty front")
    score = array[:, 0] + weight * array[:, 1]
    return int(min(range(len(array)), key=lambda i: (score[i], array[i, 1])))


def reference_point(points: Points, margin: float = 0.1) -> list[float]:
    """A hypervolume reference just beyond the worst of ``points`` in each objective.

    The margin is a fraction of each objective's spread (or of its magnitude when all points
    agree), so it works for negative and zero objectives too; the extreme points then still add
    volume.
    """
    array = np.asarray(points, dtype=float).reshape(-1, 2)
    worst, best = array.max(axis=0), array.min(axis=0)
    scale = np.maximum(np.maximum(worst - best, np.abs(worst)), 1e-12)
    return [float(v) for v in worst + margin * scale]
