"""Metrics with their sample size and a bootstrap interval, so a reader sees when two values are not really different."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Metric = dict[str, Any]
"""``{"value": float, "n": int, "ci": [low, high] or None}``."""

Metrics = dict[str, Metric]


def interval(
    statistic: Callable[[np.ndarray], float], n: int, seed: int = 0, resamples: int = 1000, estimate: float | None = None
) -> list[float] | None:
    """The 95 % percentile-bootstrap interval of ``statistic(indices)`` over ``n`` items drawn with replacement (None for n < 2).

    A statistic that resampling itself biases needs its ``estimate`` on all items: FID and KID rise
    when an image is drawn twice, so their plain interval can lie wholly above the value. With an
    ``estimate``, the interval is shifted by the bootstrap's estimate of that bias (the resamples'
    mean minus ``estimate``).
    """
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, n, size=n)) for _ in range(resamples)]
    shift = 0.0 if estimate is None else float(np.mean(values)) - estimate
    return [float(np.percentile(values, 2.5)) - shift, float(np.percentile(values, 97.5)) - shift]


def metric(
    samples: Sequence[float] | np.ndarray, seed: int = 0, resamples: int = 1000, center: Callable[[np.ndarray], Any] = np.mean
) -> Metric:
    """``center`` (the mean unless said otherwise) of per-sample values, with its bootstrap interval."""
    values = np.asarray(samples, dtype=float)
    ci = interval(lambda i: float(center(values[i])), len(values), seed, resamples)
    return {"value": float(center(values)), "n": len(values), "ci": ci}


DISTANCE_FLOOR = 1e-6
"""Per-image distances below this (float32 features' resolution) count as it, so an exact 0 cannot drown the rest."""


def geometric_mean(values: np.ndarray) -> float:
    """The geometric mean of non-negative per-image distances, each at least :data:`DISTANCE_FLOOR`.

    A few images whose object changed outright (distances tens of times the rest) decide an arithmetic
    mean of 16; the geometric mean weighs every image's ratio alike, so it ranks schedules the same way on
    other seeds (docs/evaluation.md, "Which quality objective").
    """
    return float(np.exp(np.mean(np.log(np.maximum(values, DISTANCE_FLOOR)))))
