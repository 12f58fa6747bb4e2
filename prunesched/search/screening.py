"""Screening (multi-fidelity): new candidates are scored on a few images first, and only those that can
still reach the front go on to all of them.

Most of a generation's candidates end up dominated, and their full evaluation is spent for nothing.
So each searched candidate is first evaluated on the first ``images`` of the evaluator's images
(the same prompts and seeds every candidate gets). It is promoted to the full evaluation when its
screening is dominated by no screening of the members of the front of full evaluations stored so
far: the baselines are screened too (and all promoted), so from the first generation on every
front member has a screening on the same images and seeds to be compared with. Comparing on
the same images pairs the comparison: what makes a few images a noisy sample (some prompts are
harder than others) is the same on both sides, where each side's own 95 % interval at four
images would span most of the objective's range. A candidate left behind is stored as done with
its screening's values, each carrying its ``n``, is told to the proposer with them, and never
stands on a front or in an export. Validations are never screened. Guardrails are checked on the
full evaluation only (a handful of images cannot bound a rate like caption accuracy).

```toml
[screening]      # the defaults
enabled = true
images = 4       # first-rung images; no screening when the evaluator has this many or fewer
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


def can_reach(point: Sequence[float], front: Sequence[Sequence[float]]) -> bool:
    """Whether ``point`` (both objectives minimised) is dominated by no point of ``front``."""
    return not any(f[0] <= point[0] and f[1] <= point[1] and (f[0] < point[0] or f[1] < point[1]) for f in front)
