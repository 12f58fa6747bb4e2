"""Metrics with their sample size and a bootstrap interval, so a reader sees when two values are not really different."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Metric = dict[str, Any]
"""``{"value": float, "n": int, "ci": [low, high] or None}``."""

Metrics = dict[str, Metric]


def interval(statistic: Callable[[np.ndarray], float], n: int, seed: int = 0, resamples: int = 1000) -> list[float] | None:
    """The 95 % percentile-bootstrap interval of ``statistic(indices)`` over ``n`` items drawn with replacement (None for n < 2)."""
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, n, size=n)) for _ in range(resamples)]
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def metric(samples: Sequence[float], seed: int = 0, resamples: int = 1000, center: Callable[[np.ndarray], Any] = np.mean) -> Metric:
    """``center`` (the mean unless said otherwise) of per-sample values, with its bootstrap interval."""
    values = np.asarray(samples, dtype=float)
    ci = interval(lambda i: float(center(values[i])), len(values), seed, resamples)
    return {"value": float(center(values)), "n": int(len(values)), "ci": ci}
