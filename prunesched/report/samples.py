"""Sample images of front points next to the full model's, made with the search's own evaluator settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from prunesched.errors import ConfigError
from prunesched.runtime.schedule import Schedule


def sample_images(
    evaluator: Mapping[str, Any], schedules: Sequence[Schedule], images: int
) -> tuple[list[str], torch.Tensor, list[torch.Tensor]]:
    """The prompts, the full model's images and each schedule's, for ``images`` of the search's prompts and seeds.

    Only a ``pipeline`` evaluator makes images; any other kind is a :class:`ConfigError`.
    """
    from prunesched.evaluation.evaluate import EvalSettings
    from prunesched.evaluation.generation import ImageGenerator
    from prunesched.models.loading import load_pipeline
    from prunesched.search.evaluators import evaluator_settings

    _, settings = evaluator_settings(evaluator)
    if not isinstance(settings, EvalSettings):
        raise ConfigError(f"the search's evaluator is of kind {evaluator.get('kind')!r}, which makes no images; use --images 0")
    settings = dataclasses.replace(settings, images=images, reference=None, cost=("measured",), batch_size=min(images, settings.batch_size))
    generator = ImageGenerator(load_pipeline(settings.model), settings.spec())
    return list(generator.spec.prompts), generator.images(None), [generator.images(s) for s in schedules]
