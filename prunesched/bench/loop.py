"""A denoising loop without a pipeline: one denoiser (UNet or DiT) driven exactly as a diffusers pipeline drives it.

The benchmarks need a denoiser's calls through ``prunesched.apply`` but none of the text
encoders or the VAE. On the ``meta`` device the loop runs on shapes only, so MACs at a paper's
full resolution cost neither compute nor weights.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

import prunesched
from prunesched import Schedule


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
    """Calls of one denoiser, one per timestep of a schedule-length loop, with ``scheduler.step`` after each.

    ``pipe`` holds the denoiser (as ``unet`` or ``transformer``) and the scheduler, which is all
    ``prunesched.apply`` needs; ``call(sample, t)`` makes one denoiser call and returns its output.
    The sample fed to every call stays the same: only the cost matters here.
    """

    def __init__(self, pipe: SimpleNamespace, call: Callable[[Tensor, Tensor], Tensor], sample: Tensor) -> None:
        self.pipe = pipe
        self.call = call
        self.sample = sample

    def run(self, schedule: Schedule, around: Callable[[int], Any]) -> None:
        """One generation of ``len(schedule)`` iterations; each denoiser call runs inside the context ``around(i)``."""
        scheduler = self.pipe.scheduler
        scheduler.set_timesteps(len(schedule))
        if hasattr(scheduler, "set_begin_index"):  # as the pipelines do; the loop starts at the first timestep
            scheduler.set_begin_index(0)
        with prunesched.apply(self.pipe, schedule), torch.inference_mode():
            for i, t in enumerate(scheduler.timesteps):
                with around(i):
                    out = self.call(self.sample, t)
                scheduler.step(out, t, self.sample)
