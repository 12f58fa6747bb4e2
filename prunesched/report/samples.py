"""Sample images of front points next to the full model's, made with the search's own evaluator settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from prunesched.errors import ConfigError
from prunesched.evaluation.settings import PipelineSettings
from prunesched.runtime.schedule import Schedule
from prunesched.search.evaluators import EvaluatorSettings


def sample_images(
    evaluator: EvaluatorSettings, schedules: Sequence[Schedule], images: int
) -> tuple[list[str], torch.Tensor, list[torch.Tensor]]:
    """The prompts, the full model's images and each schedule's, for ``images`` of the search's prompts and seeds.

    Only a ``pipeline`` evaluator makes images; any other kind is a :class:`ConfigError`.
    """
    from prunesched.evaluation.generation import ImageGenerator

    if not isinstance(evaluator, PipelineSettings):
        raise ConfigError(f"the search's evaluator is of kind {evaluator.kind!r}, which makes no images; use --images 0")
    settings = dataclasses.replace(
        evaluator, images=images, reference=None, cost=("measured",), batch_size=min(images, evaluator.batch_size)
    )
    generator = ImageGenerator(settings.pipeline(), settings.spec())
    return list(generator.spec.prompts), generator.images(None), [generator.images(s) for s in schedules]
