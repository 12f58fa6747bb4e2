"""Helpers for runtime tests on tiny pipelines."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import UNet2DConditionModel

PROMPT = "a red circle above a blue square"


def generate(pipe: Any, steps: int = 6, height: int = 32, width: int = 32, **kwargs: Any) -> np.ndarray:
    """A fixed-seed generation returning the decoded images as an array."""
    generator = torch.Generator().manual_seed(kwargs.pop("seed", 0))
    return pipe(PROMPT, num_inference_steps=steps, height=height, width=width, generator=generator, output_type="np", **kwargs).images


def loop_iterations(pipe: Any, **kwargs: Any) -> list[tuple[int, float]]:
    """Run a generation and return ``(loop index i, timestep t)`` for every iteration, from the pipeline's own callback."""
    seen: list[tuple[int, float]] = []

    def callback(_pipe: Any, i: int, t: Any, callback_kwargs: dict) -> dict:
        seen.append((i, float(t)))
        return callback_kwargs

    generate(pipe, callback_on_step_end=callback, **kwargs)
    return seen


def two_level_unet() -> UNet2DConditionModel:
    """A UNet for the tiny SD pipeline with two levels and one layer per block, which torch.compile traces in half the time."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    return unet.eval()
