"""Tiny SD-1.x, SDXL, SD3, PixArt-Σ and Flux-style pipelines (and SD-1.x and SDXL ControlNet ones) built from configs,
with random weights.

They run every code path of the real pipelines in well under a second per image on a CPU, which
makes them the test bed of the runtime. Their images are noise: use them to test mechanics,
never quality.
"""

from __future__ import annotations

import tempfile

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    PixArtSigmaPipeline,
    PixArtTransformer2DModel,
    PNDMScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionControlNetPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, T5Config, T5EncoderModel

from prunesched.models.tokenizer import clip_tokenizer, word_tokenizer

SD_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}
"""Stable Diffusion 1.5's scheduler config (PNDM/PLMS)."""


def _text_config(hidden: int = 32, projection: int = 32) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=1,
        vocab_size=1000,
        hidden_size=hidden,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        layer_norm_eps=1e-5,
        hidden_act="gelu",
        projection_dim=projection,
    )


def _tokenizer() -> CLIPTokenizer:
    """A byte-level CLIP tokenizer; its files are read at load time, so their folder is removed after."""
    with tempfile.TemporaryDirectory() as directory:
        return clip_tokenizer(directory)


def _vae(**config: float) -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=[16, 32],
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        norm_num_groups=8,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        **config,
    )


def tiny_sd_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """An SD-1.x-shaped pipeline: cross-attention at the two highest levels, PNDM, VAE factor 2."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 32, 64),
        layers_per_block=2,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    pipe = StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=CLIPTextModel(_text_config()),
        tokenizer=_tokenizer(),
        unet=unet.eval(),
        scheduler=PNDMScheduler(**SD_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sdxl_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    """An SDXL-shaped pipeline: no attention at the highest level, two transformer layers per block, Euler."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 32, 64),
        layers_per_block=2,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4, 8),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2, 2),
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
        norm_num_groups=8,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    pipe = StableDiffusionXLPipeline(
        vae=_vae(),
        text_encoder=CLIPTextModel(_text_config()),
        text_encoder_2=CLIPTextModelWithProjection(_text_config()),
        tokenizer=_tokenizer(),
        tokenizer_2=_tokenizer(),
        unet=unet.eval(),
        scheduler=scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_controlnet(unet: UNet2DConditionModel, seed: int = 1) -> ControlNetModel:
    """A ControlNet for ``unet``: its down path, a conditioning embedding for control images at the output size
    (VAE factor 2), and random weights everywhere. A trained ControlNet starts from zero convolutions; these are
    random too, so that the control image changes the output at every step."""
    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16), load_weights_from_unet=False)
    for conv in (controlnet.controlnet_cond_embedding.conv_out, *controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block):
        torch.nn.init.normal_(conv.weight, std=0.1)
    return controlnet.eval()


def tiny_sd_controlnet_pipeline(seed: int = 0) -> StableDiffusionControlNetPipeline:
    """The tiny SD-1.x pipeline with a :func:`tiny_controlnet`."""
    base = tiny_sd_pipeline(seed)
    controlnet = tiny_controlnet(base.unet, seed + 1)
    pipe = StableDiffusionControlNetPipeline(**base.components, controlnet=controlnet, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sdxl_controlnet_pipeline(seed: int = 0) -> StableDiffusionXLControlNetPipeline:
    """The tiny SDXL pipeline with a :func:`tiny_controlnet`."""
    base = tiny_sdxl_pipeline(seed)
    pipe = StableDiffusionXLControlNetPipeline(**base.components, controlnet=tiny_controlnet(base.unet, seed + 1))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sd3_pipeline(seed: int = 0, layers: int = 2) -> StableDiffusion3Pipeline:
    """An SD3-shaped pipeline: an MMDiT of ``layers`` blocks (joint attention, patch 2), both CLIP encoders, no T5, flow matching."""
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=layers,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=64,
        caption_projection_dim=32,
        pooled_projection_dim=64,
    )
    pipe = StableDiffusion3Pipeline(
        transformer=transformer.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(shift_factor=0.0609),
        text_encoder=CLIPTextModelWithProjection(_text_config()),
        tokenizer=_tokenizer(),
        text_encoder_2=CLIPTextModelWithProjection(_text_config()),
        tokenizer_2=_tokenizer(),
        text_encoder_3=None,
        tokenizer_3=None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_pixart_pipeline(seed: int = 0, layers: int = 2) -> PixArtSigmaPipeline:
    """A PixArt-Σ-shaped pipeline: a DiT of ``layers`` blocks with ada_norm_single, learned variance, a tiny T5, DPM-Solver."""
    torch.manual_seed(seed)
    transformer = PixArtTransformer2DModel(
        sample_size=16,
        num_layers=layers,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=32,
        in_channels=4,
        out_channels=8,
        cross_attention_dim=24,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    text_encoder = T5EncoderModel(T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4))
    pipe = PixArtSigmaPipeline(
        tokenizer=word_tokenizer(),
        text_encoder=text_encoder.eval(),
        vae=_vae(),
        transformer=transformer.eval(),
        scheduler=DPMSolverMultistepScheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_flux_pipeline(seed: int = 0, layers: tuple[int, int] = (2, 3), guidance_embeds: bool = True) -> FluxPipeline:
    """A Flux-shaped pipeline: ``layers`` double- and single-stream blocks, rotary positions, CLIP and a tiny T5, flow matching.

    ``guidance_embeds=True`` is FLUX.1-dev's distilled guidance (one transformer call per step);
    true CFG (``true_cfg_scale > 1`` with a negative prompt) runs two calls per step.
    """
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=layers[0],
        num_single_layers=layers[1],
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=(4, 4, 8),
    )
    text_encoder_2 = T5EncoderModel(T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4))
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=CLIPTextModel(_text_config()),
        tokenizer=_tokenizer(),
        text_encoder_2=text_encoder_2.eval(),
        tokenizer_2=word_tokenizer(),
        transformer=transformer.eval(),
    )
    pipe.default_sample_size = 16  # 32x32 images, as the other tiny pipelines make (Flux's default is 128, for 1024x1024)
    pipe.set_progress_bar_config(disable=True)
    return pipe


TINY_PIPELINES = {
    "tiny-sd": tiny_sd_pipeline,
    "tiny-sdxl": tiny_sdxl_pipeline,
    "tiny-sd3": tiny_sd3_pipeline,
    "tiny-pixart": tiny_pixart_pipeline,
    "tiny-flux": tiny_flux_pipeline,
}
"""The random-weight pipelines a config can name, for tests of mechanics."""
