"""Confirmation (racing): every point that reaches the front is evaluated again on more images before it stays there.

A search ranks its candidates on a few images each (16 by default), and the per-image distances are
heavy-tailed: of hundreds of candidates, those that reach the front are partly the ones whose few
images happened to be easy (the winner's curse). The final validation measures that afterwards;
confirmation keeps it from steering the search. After each generation's evaluations (and after the
baselines'), every member of the front that is not confirmed yet is evaluated on the first
``images`` prompts and seeds, the same for every candidate and baseline, so that comparisons stay
paired; its values are replaced by the confirmation's (each carrying its ``n``), its guardrails are
checked again on them, and the front is computed again, until every member of the front is
confirmed. The proposer is told the confirmed values. The confirmation's images include the ones
the point was chosen on, so their luck still weighs ``evaluator images / images`` of its value.

```toml
[confirmation]   # the default: off
images = 0       # e.g. 64: front points are confirmed on 64 images; must be more than [evaluator] images
```
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from prunesched.checks import check_number
from prunesched.errors import ConfigError
from prunesched.evaluation.settings import MAX_IMAGES, PipelineSettings
from prunesched.search.evaluators import EvaluatorSettings


@dataclass(frozen=True)
class ConfirmationConfig:
    """The ``[confirmation]`` table: on how many images front points are confirmed (0: not confirmed)."""

    images: int = 0

    def __post_init__(self) -> None:
        check_number(self.images, "images", "[confirmation]", integer=True, high=MAX_IMAGES)

    def check(self, settings: EvaluatorSettings) -> None:
        """Refuse a confirmation that would not add images to the evaluator's."""
        if not self.images:
            return
        if not isinstance(settings, PipelineSettings):
            raise ConfigError(f"[confirmation] needs an evaluator with images (kind pipeline), not {settings.kind!r}; set images = 0")
        if self.images <= settings.images:
            raise ConfigError(
                f"[confirmation] images must be more than [evaluator] images ({settings.images}), got {self.images}; 0 turns it off"
            )

    def worker_settings(self, settings: EvaluatorSettings) -> EvaluatorSettings:
        """The settings the search's workers are built with: the evaluator's, holding the confirmation's images where it
        confirms (a plain evaluation then scores the first ``settings.images`` of them)."""
        if not self.images or not isinstance(settings, PipelineSettings):
            return settings
        return replace(settings, images=self.images)

    def evaluation_images(self, settings: EvaluatorSettings) -> int | None:
        """The images a plain evaluation asks the search's workers for: None (all they hold) unless they hold the
        confirmation's images too."""
        return settings.images if self.images and isinstance(settings, PipelineSettings) else None
