"""The embedded model's components, untrained: SD 1.5's component classes and layout, scaled down.

The shipped weights are what ``experiments/train_shapes.py`` makes of these. The highest
transformer level sees 32x32 = 1024 tokens (64-pixel images, VAE factor 2), so token pruning has
as much to choose from as at SD 1.5's 64x64-latent level divided by four.
"""

from __future__ import annotations

from pathlib import Path

from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, PNDMScheduler, SD3Transformer2DModel, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from prunesched.models.shapes.data import vocabulary
from prunesched.models.tiny import SD_SCHEDULER
from prunesched.models.tokenizer import clip_tokenizer

IMAGE_SIZE = 64
MAX_TOKENS = 24
"""Caption length the tokenizer pads to: the longest caption is 16 tokens with its start and end."""


def tokenizer(directory: str | Path) -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary files (every caption word as one token) are written into ``directory``."""
    return clip_tokenizer(directory, vocabulary(), max_length=MAX_TOKENS)


def text_encoder(vocab_size: int) -> CLIPTextModel:
    return CLIPTextModel(_text_config(vocab_size))


def dit_text_encoder(vocab_size: int) -> CLIPTextModelWithProjection:
    """SD3's CLIP encoders (two of them, each with a pooled projection) at the UNet text encoder's size."""
    return CLIPTextModelWithProjection(_text_config(vocab_size))


def _text_config(vocab_size: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=256,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        projection_dim=64,
    )


def vae() -> AutoencoderKL:
    """SD's VAE classes at factor 2; without the mid-block attention, which at 1024 tokens would double training time."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=16,
        sample_size=IMAGE_SIZE,
        mid_block_add_attention=False,
    )


def unet() -> UNet2DConditionModel:
    """Cross-attention at the two highest levels, none at the lowest, as SD 1.5 (which has four levels)."""
    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 2,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 128),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=(1, 2, 4),
        norm_num_groups=16,
    )


def scheduler() -> PNDMScheduler:
    """SD 1.5's noise schedule and sampler."""
    return PNDMScheduler(**SD_SCHEDULER)


def dit() -> SD3Transformer2DModel:
    """SD3's MMDiT at width 120 and depth 6: patch 4 over the 32x32 latents, so 64 image tokens attend jointly with the
    caption's (patch 2's 256 tokens made each training step 2.7x dearer, and in the 90 minutes the model never learnt
    shape); the two CLIP encoders' 64-wide outputs side by side are its 128-wide context and pooled vector.
    (Width 128 would make its weights 15.3 MB, over the 15 MB the package allows it.)"""
    return SD3Transformer2DModel(
        sample_size=IMAGE_SIZE // 2,
        patch_size=4,
        in_channels=4,
        out_channels=4,
        num_layers=6,
        attention_head_dim=30,
        num_attention_heads=4,
        joint_attention_dim=128,
        caption_projection_dim=120,
        pooled_projection_dim=128,
        pos_embed_max_size=IMAGE_SIZE // 8,
    )


def dit_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """SD3's flow-matching Euler sampler."""
    return FlowMatchEulerDiscreteScheduler(shift=SHIFT)


SHIFT = 1.0
"""Timestep shift of the DiT's sampler (SD3 uses 3.0 at 4,096 tokens; this model has 256)."""
