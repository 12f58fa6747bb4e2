"""A denoising loop without a pipeline: one denoiser (UNet or DiT) driven exactly as a diffusers pipeline drives it.

The benchmarks need a denoiser's calls through ``prunesched.apply`` but none of the text
encoders or the VAE. On the ``meta`` device the loop runs on shapes only, so MACs at a paper's
full resolution cost neither compute nor weights: :meth:`DenoiserLoop.count_macs`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from types import SimpleNamespace
from typing import Any

import torch
from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel, PixArtTransformer2DModel
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

import prunesched
from prunesched import Schedule
from prunesched.runtime.dit_layout import DiT
from prunesched.timing import Sample, Stopwatch


def inputs_like(module: nn.Module, seed: int = 0) -> Callable[..., Tensor]:
    """A maker of input tensors on ``module``'s device and dtype: random values, or shapes only on the meta device."""
    param = next(module.parameters())
    generator = torch.Generator().manual_seed(seed)

    def tensor(*shape: int) -> Tensor:
        if param.device.type == "meta":
            return torch.empty(*shape, device="meta")
        return torch.randn(*shape, generator=generator).to(param.device, param.dtype)

    return tensor


class DenoiserLoop:
    """Calls of one denoiser, one per timestep of a loop, with ``scheduler.step`` after each, as a pipeline makes them.

    ``pipe`` holds the denoiser (as ``unet`` or ``transformer``) and the scheduler, which is all
    ``prunesched.apply`` needs; ``call(sample, t)`` makes one denoiser call and returns its output.
    The sample fed to every call stays the same: only the cost matters here. ``watch`` times
    calls on the sample's device. Every benchmark drives its denoiser through this one class.
    """

    def __init__(self, pipe: SimpleNamespace, call: Callable[[Tensor, Tensor], Tensor], sample: Tensor) -> None:
        self.pipe = pipe
        self.call = call
        self.sample = sample
        self.watch = Stopwatch(sample.device)

    def run(self, schedule: Schedule, around: Callable[[int], AbstractContextManager[Any]]) -> None:
        """One generation of ``len(schedule)`` iterations with ``schedule`` applied; each call runs inside ``around(i)``."""
        with prunesched.apply(self.pipe, schedule):
            self.drive(len(schedule), around)

    def drive(self, iterations: int, around: Callable[[int], AbstractContextManager[Any]]) -> None:
        """One generation of ``iterations`` iterations of the denoiser as it stands: unpatched, or patched by a peer
        (tomesd, DeepCache) that the caller installed. Each call runs inside the context ``around(i)``."""
        scheduler = self.pipe.scheduler
        scheduler.set_timesteps(iterations)
        if hasattr(scheduler, "set_begin_index"):  # as the pipelines do; the loop starts at the first timestep
            scheduler.set_begin_index(0)
        with torch.inference_mode():
            for i, t in enumerate(scheduler.timesteps):
                with around(i):
                    out = self.call(self.sample, t)
                scheduler.step(out, t, self.sample)

    def count_macs(self, schedule: Schedule) -> list[int]:
        """The multiply-accumulates of every denoiser call of one generation with ``schedule`` applied, in loop order.

        ``FlopCounterMode`` counts 2 FLOPs a MAC of every matrix product (convolutions, linear layers and
        attention's two products) and nothing else. Count on the meta device: it needs no weights, and there
        attention runs its math path, whose products are counted (torch counts nothing of the CPU's fused kernel).
        """
        counters = [FlopCounterMode(display=False) for _ in range(len(schedule))]
        self.run(schedule, counters.__getitem__)  # call i counts into counters[i]
        return [counter.get_total_flops() // 2 for counter in counters]

    def time_schedule(self, schedule: Schedule) -> list[Sample]:
        """The time of every denoiser call of one generation with ``schedule`` applied, in loop order."""
        times: list[Sample] = []
        self.run(schedule, lambda _i: self.watch.region(times))
        return times


def dit_loop(transformer: DiT, latent: int, batch: int, text_tokens: int) -> DenoiserLoop:
    """Calls of an SD3, PixArt-Σ or Flux transformer driven as its pipeline drives them, on the transformer's device.

    ``latent`` is the side of the VAE latent (128 for 1024x1024 images, which each of these DiTs turns into
    4,096 image tokens: SD3 and PixArt by 2x2 patches, Flux by packing 2x2 latent pixels into one token);
    ``batch`` 2 is one image with classifier-free guidance, 1 Flux's guidance-distilled call. SD3 and Flux
    step flow-matching Euler with shift 3 (Flux's pipeline shifts by the image size: other timesteps, the
    same cost), PixArt-Σ DPM-Solver++; PixArt's predicted variance is dropped before the step, as its pipeline does.
    """
    config, tensor = transformer.config, inputs_like(transformer)
    scheduler: Any = FlowMatchEulerDiscreteScheduler(shift=3.0)
    divisor = 1.0
    context: dict[str, Any]
    if isinstance(transformer, FluxTransformer2DModel):
        tokens = (latent // 2) ** 2
        sample = tensor(batch, tokens, config.in_channels)
        context = {
            "encoder_hidden_states": tensor(batch, text_tokens, config.joint_attention_dim),
            "pooled_projections": tensor(batch, config.pooled_projection_dim),
            "img_ids": tensor(tokens, 3),
            "txt_ids": tensor(text_tokens, 3),
            "guidance": tensor(batch) if config.guidance_embeds else None,
        }
        divisor = 1000.0  # Flux takes the timestep over 1000
    else:
        sample = tensor(batch, config.in_channels, latent, latent)
        if isinstance(transformer, PixArtTransformer2DModel):
            scheduler = DPMSolverMultistepScheduler()
            text = tensor(batch, text_tokens, config.caption_channels)
            context = {"encoder_hidden_states": text, "added_cond_kwargs": {"resolution": None, "aspect_ratio": None}}
        else:
            text = tensor(batch, text_tokens, config.joint_attention_dim)
            context = {"encoder_hidden_states": text, "pooled_projections": tensor(batch, config.pooled_projection_dim)}

    def call(sample: Tensor, t: Tensor) -> Tensor:
        output = transformer(hidden_states=sample, timestep=(t / divisor).expand(batch).to(sample.device), **context).sample
        return output[:, : sample.shape[1]]  # PixArt-Σ also predicts its variance; the others return the sample's shape

    pipe = SimpleNamespace(transformer=transformer, scheduler=scheduler, do_classifier_free_guidance=batch % 2 == 0)
    return DenoiserLoop(pipe, call, sample)
