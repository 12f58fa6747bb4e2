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


def dit_inputs(kind: str, pipe: Any) -> dict[str, Any]:
    """Inputs for a direct transformer call on a 16x24 latent. SD3 and PixArt: one CFG batch, the same latents twice
    and different text per half; Flux: one image with its distilled guidance scale."""
    generator = torch.Generator().manual_seed(1)
    config = pipe.transformer.config
    if kind == "flux":
        tokens, text = 8 * 12, 7  # Flux packs 2x2 latent patches into one token
        return {
            "hidden_states": torch.randn(1, tokens, config.in_channels, generator=generator),
            "encoder_hidden_states": torch.randn(1, text, config.joint_attention_dim, generator=generator),
            "pooled_projections": torch.randn(1, config.pooled_projection_dim, generator=generator),
            "img_ids": torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(8.0), torch.arange(12.0), indexing="ij"), -1).reshape(-1, 3),
            "txt_ids": torch.zeros(text, 3),
            "guidance": torch.full((1,), 3.5),
        }
    latents = torch.randn(1, config.in_channels, 16, 24, generator=generator).repeat(2, 1, 1, 1)
    if kind == "sd3":
        return {
            "hidden_states": latents,
            "encoder_hidden_states": torch.randn(2, 7, config.joint_attention_dim, generator=generator),
            "pooled_projections": torch.randn(2, config.pooled_projection_dim, generator=generator),
        }
    return {
        "hidden_states": latents,
        "encoder_hidden_states": torch.randn(2, 7, config.caption_channels, generator=generator),
        "added_cond_kwargs": {"resolution": None, "aspect_ratio": None},
    }


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
