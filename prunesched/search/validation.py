"""Validation: the final front and the baselines evaluated once more, on more images and fresh seeds.

A search ranks hundreds of candidates on a few images each, so the points that reach its front
are partly the lucky ones (the winner's curse). After the last generation, the coordinator
evaluates every point of the final front and every baseline again with :func:`validation_settings`:
``factor`` times the images, seeds disjoint from the search's, FID and KID against the full
model's images on the same seeds, and the measured latency beside the cost model's prediction.
``prunesched front --validated`` shows the front these values give, and ``prunesched export``
picks from it. A front of many points can be thinned to ``max_front_points`` spread evenly along
its cost (the cheapest and the dearest included), where validating each would cost too much.
Whatever the thinning, each baseline's challenger is validated too: the searched front point of
least quality loss at the baseline's cost or lower (:func:`challengers`), the point the baselines
summary sets against it, so every comparison the search claims is made again on the new images.

```toml
[validation]      # the defaults
enabled = true
factor = 4            # validation images = factor x the evaluator's images
max_front_points = 0  # 0: every point of the final front; the baselines and their challengers always
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from prunesched.checks import MAX_SEED, check_number
from prunesched.errors import ConfigError
from prunesched.evaluation.settings import MAX_IMAGES, PipelineSettings
from prunesched.search.evaluators import EvaluatorSettings

SEED_OFFSET = 1_000_000
"""Validation image i uses seed ``seed + SEED_OFFSET + i``: disjoint from the search's images (fewer than a million)."""
MAX_FACTOR = 1_000
"""The most times the search's image count a validation may use."""
MAX_FRONT_POINTS = 10_000
"""The largest ``max_front_points`` a config may give (a front of two objectives rarely holds hundreds)."""


@dataclass(frozen=True)
class ValidationConfig:
    """The ``[validation]`` table: whether the final front and the baselines are validated, and on how many more images."""

    enabled: bool = True
    factor: int = 4
    max_front_points: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"[validation] enabled must be true or false, got {self.enabled!r}")
        check_number(self.factor, "factor", "[validation]", integer=True, low=1, high=MAX_FACTOR)
        check_number(self.max_front_points, "max_front_points", "[validation]", integer=True, high=MAX_FRONT_POINTS)

    def thinned(self, costs: Sequence[float]) -> list[int]:
        """Indices of the front points to validate, given each one's cost: all of them, or ``max_front_points``
        spread evenly from the cheapest to the dearest."""
        order = sorted(range(len(costs)), key=lambda i: costs[i])
        if not self.max_front_points or len(order) <= self.max_front_points:
            return order
        picks = np.linspace(0, len(order) - 1, self.max_front_points).round().astype(int)
        return [order[i] for i in sorted(set(picks.tolist()))]


def challengers(front: Sequence[tuple[float, float]], baselines: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the front points (quality loss, cost) set against the baselines: for each baseline, the point of
    least quality loss among those that cost no more than it (none where every point costs more)."""
    out = set()
    for _, cost in baselines:
        cheaper = [i for i, point in enumerate(front) if point[1] <= cost]
        if cheaper:
            out.add(min(cheaper, key=lambda i: front[i]))
    return sorted(out)


def validation_settings(settings: EvaluatorSettings, config: ValidationConfig) -> PipelineSettings | None:
    """The evaluator settings a validation runs: ``factor`` times the images on fresh seeds, FID/KID against the full
    model where there are features, and measured latency beside the search's cost sources. None where there is
    nothing to validate: validation is off, or the evaluator has no images and no noise (the synthetic problem)."""
    if not config.enabled or not isinstance(settings, PipelineSettings):
        return None
    reference = settings.reference or ("model" if settings.has_features() else None)
    return replace(
        settings,
        images=min(settings.images * config.factor, MAX_IMAGES),
        seed=(settings.seed + SEED_OFFSET) % (MAX_SEED + 1),
        reference=reference,
        cost=tuple(dict.fromkeys((*settings.cost, "measured"))),
    )
