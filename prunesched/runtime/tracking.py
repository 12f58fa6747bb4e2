"""Which iteration of the denoising loop a denoiser call (UNet or transformer) belongs to.

The iteration index is the number of ``scheduler.step`` calls since the last
``scheduler.set_timesteps``, plus the position where the loop started in the scheduler's
timesteps (img2img starts part-way). It is not ``timesteps.index(t)`` per call (wrong for PNDM's
and Heun's repeated timesteps) and not a count of denoiser calls (wrong when CFG runs as two calls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from prunesched.runtime.patcher import Patcher


@dataclass(frozen=True)
class Position:
    """Where a denoiser call sits in the denoising loop.

    Attributes:
        iteration: index into the scheduler's timesteps, i.e. into the schedule's steps.
        stream: 0 for the first denoiser call of the iteration, 1 for a second (non-batched CFG), ...
        new_generation: whether this call starts a new pipeline call.
        loop_length: ``len(scheduler.timesteps)``, the length a schedule must have.
    """

    iteration: int
    stream: int
    new_generation: bool
    loop_length: int


class StepTracker:
    """Follows ``pipe.scheduler`` (even when the user swaps it) by wrapping its ``set_timesteps`` and ``step``."""

    def __init__(self, pipe: Any) -> None:
        self._pipe = pipe
        self._scheduler: Any = None
        self._patcher = Patcher()
        self._fresh = True
        self._steps_done = 0
        self._calls = 0
        self._offset = 0

    def locate(self, timestep: Any, count: bool = True) -> Position:
        """The position of the denoiser call being made with ``timestep``.

        ``count=False`` locates a call that comes before the denoiser's in the same stream (a
        ControlNet's): it gets the position of the denoiser call that follows it.
        """
        scheduler = self._pipe.scheduler
        if scheduler is not self._scheduler:
            self._attach(scheduler)
        new = self._fresh
        if new:
            self._fresh, self._steps_done, self._calls = False, 0, 0
            self._offset = _start_offset(self._pipe, scheduler, timestep)
        position = Position(self._offset + self._steps_done, self._calls, new, len(scheduler.timesteps))
        self._calls += count
        return position

    @property
    def first_iteration(self) -> int:
        """Where the current generation's loop started in the scheduler's timesteps (img2img below strength 1: part-way)."""
        return self._offset

    def detach(self) -> None:
        self._patcher.undo()
        self._scheduler = None

    def _attach(self, scheduler: Any) -> None:
        self.detach()
        self._scheduler = scheduler
        self._fresh = True
        self._patcher.replace_method(scheduler, "set_timesteps", lambda original: _after(original, self._on_set_timesteps))
        self._patcher.replace_method(scheduler, "step", lambda original: _after(original, self._on_step))

    def _on_set_timesteps(self) -> None:
        self._fresh = True

    def _on_step(self) -> None:
        self._steps_done += 1
        self._calls = 0


def _after(original: Any, callback: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        callback()
        return result

    return wrapper


def _start_offset(pipe: Any, scheduler: Any, timestep: Any) -> int:
    """Where the loop starts in the scheduler's timesteps, from the first call of a generation.

    The scheduler's ``begin_index`` when the pipeline set one (diffusers' img2img does, for
    schedulers that have it). Otherwise the position of the first timestep ``t``; when ``t``
    occurs twice (PNDM repeats its second timestep, Heun every one), the position that leaves
    ``pipe.num_timesteps`` iterations to run, which diffusers pipelines set before the loop.
    This costs one host sync per generation.
    """
    begin = getattr(scheduler, "begin_index", None)
    if begin is not None:
        return int(begin)
    timesteps = scheduler.timesteps
    t = torch.as_tensor(timestep).flatten()[0].to(timesteps.device, timesteps.dtype)
    matches = (timesteps == t).nonzero().flatten().tolist()
    if not matches:
        return 0
    loop_length = getattr(pipe, "num_timesteps", None)
    if isinstance(loop_length, int) and len(timesteps) - loop_length in matches:
        return len(timesteps) - loop_length
    return matches[0]
