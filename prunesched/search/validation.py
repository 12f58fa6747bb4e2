"""Validation: the final front and the baselines evaluated once more, on more images and fresh seeds.

A search ranks hundreds of candidates on a few images each, so the points that reach its front
are partly the lucky ones (the winner's curse). After the last generation, the coordinator
evaluates every point of the final front and every baseline again with :func:`validation_settings`:
``factor`` times the images, seeds disjoint from the search's, FID and KID against the full
model's images on the same seeds, and the measured latency beside the cost model's prediction.
``prunesched front --validated`` shows the front these values give, and ``prunesched export``
picks from it.

```toml
[validation]      # the defaults
enabled = true
factor = 4        # validation images = factor x the evaluator's images
```
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from prunesched.checks import MAX_SEED, check_number
from prunesched.errors import ConfigError
from prunesched.evaluation.settings import MAX_IMAGES, PipelineSettings
from prunesched.search.evaluators import EvaluatorSettings

SEED_OFFSET = 1_000_000
"""Validation image i uses seed ``seed + SEED_OFFSET + i``: disjoint from the search's images (fewer than a million)."""
MAX_FACTOR = 1_000
"""The most times the search's image count a validation may use."""


@dataclass(frozen=True)
class ValidationConfig:
    """The ``[validation]`` table: whether the final front and the baselines are validated, and on how many more images."""

    enabled: bool = True
    factor: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"[validation] enabled must be true or false, got {self.enabled!r}")
        check_number(self.factor, "factor", "[validation]", integer=True, low=1, high=MAX_FACTOR)


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
