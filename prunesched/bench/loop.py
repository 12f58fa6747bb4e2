"""A denoising loop without a pipeline: one denoiser (UNet or DiT) driven exactly as a diffusers pipeline drives it.

The benchmarks need a denoiser's calls through ``prunesched.apply`` but none of the text
encoders or the VAE. On the ``meta`` device the loop runs on shapes only, so MACs at a paper's
full resolution cost neither compute nor weights.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

import prunesched
from prunesched import Schedule
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

    def time_schedule(self, schedule: Schedule) -> list[Sample]:
        """The time of every denoiser call of one generation with ``schedule`` applied, in loop order."""
        times: list[Sample] = []
        self.run(schedule, lambda _i: self.watch.region(times))
        return times
