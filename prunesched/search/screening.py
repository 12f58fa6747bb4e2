"""Screening (multi-fidelity): new candidates are scored on a few images first, and only those that can
still reach the front go on to all of them.

Most of a generation's candidates end up dominated, and their full evaluation is spent for nothing.
So each searched candidate is first evaluated on the first ``images`` of the evaluator's images
(the same prompts and seeds every candidate gets). It is promoted to the full evaluation when its
optimistic point, the lower end of each objective's 95 % interval at that sample size, is not
dominated by the front of the full evaluations stored so far (the baselines' from the first
generation on): only then could it still stand on the front. A candidate left behind is stored as
done with its screening's values, each carrying its ``n``, is told to the proposer with them, and
never stands on a front or in an export. Baselines and validations are never screened. Guardrails
are checked on the full evaluation only (a handful of images cannot bound a rate like caption accuracy).

```toml
[screening]      # the defaults
enabled = true
images = 4       # first-rung images; no screening when the evaluator has this many or fewer
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prunesched.checks import check_number
from prunesched.errors import ConfigError
from prunesched.evaluation.settings import MAX_IMAGES, PipelineSettings
from prunesched.search.evaluators import EvaluatorSettings


@dataclass(frozen=True)
class ScreeningConfig:
    """The ``[screening]`` table: whether new candidates are screened, and on how many images."""

    enabled: bool = True
    images: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"[screening] enabled must be true or false, got {self.enabled!r}")
        check_number(self.images, "images", "[screening]", integer=True, low=2, high=MAX_IMAGES)

    def images_for(self, settings: EvaluatorSettings) -> int | None:
        """The images a new candidate is screened on under ``settings``; None where there is no screening: it is
        off, the evaluator has no images (the synthetic problem), or no more of them than the screening would use."""
        if not self.enabled or not isinstance(settings, PipelineSettings) or settings.images <= self.images:
            return None
        return self.images


def optimistic(metrics: Mapping[str, Any], objectives: Sequence[str]) -> tuple[float, float]:
    """The best a screened candidate's objectives could be: each one's lower 95 % bound, or its value where it has none."""
    out = []
    for name in objectives:
        ci = metrics[name].get("ci")
        out.append(float(ci[0]) if ci else float(metrics[name]["value"]))
    return out[0], out[1]


def can_reach(point: Sequence[float], front: Sequence[Sequence[float]]) -> bool:
    """Whether ``point`` (both objectives minimised) is dominated by no point of ``front``."""
    return not any(f[0] <= point[0] and f[1] <= point[1] and (f[0] < point[0] or f[1] < point[1]) for f in front)
