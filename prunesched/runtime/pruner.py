"""What the runtime needs from one token method: a ``check`` that refuses, an ``install`` that patches.

Each method's module (``similarity_pruning``, ``atedm_pruning``, ``cat_pruning``) defines a
:class:`Pruner` for it, and ``patch.PRUNERS`` picks one by the type of the schedule's method. A
method keeps whatever it carries from step to step in its own per-stream object inside
``RunState.cache()`` (``CatStream``, ``DatoStream``), never in ``RunState`` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from diffusers import UNet2DConditionModel

from prunesched.errors import ScheduleError
from prunesched.runtime.dit_layout import DiT
from prunesched.runtime.methods import TokenMethod
from prunesched.runtime.patcher import Patcher
from prunesched.runtime.schedule import Schedule
from prunesched.runtime.state import RunState
from prunesched.runtime.unet_layout import Slot

Denoiser: TypeAlias = UNet2DConditionModel | DiT
Method = TypeVar("Method", bound=TokenMethod)


@dataclass(frozen=True)
class PatchTarget:
    """What a schedule is installed into.

    Attributes:
        pipe: the diffusers pipeline (some methods refuse some pipelines, e.g. multi-chunk guidance).
        denoiser: ``pipe.unet`` or ``pipe.transformer``.
        slots: the UNet transformer blocks the schedule prunes (see
            :func:`~prunesched.runtime.unet_layout.select_slots`); empty for a DiT.
    """

    pipe: Any
    denoiser: Denoiser
    slots: list[Slot]

    @property
    def unet(self) -> UNet2DConditionModel | None:
        return self.denoiser if isinstance(self.denoiser, UNet2DConditionModel) else None


def _no_latent_limit(target: PatchTarget, schedule: Schedule, method: Any, latent_hw: tuple[int, int]) -> None:
    """A method whose limits do not depend on the latent size."""


@dataclass(frozen=True)
class Pruner(Generic[Method]):
    """How the runtime prunes with one token method.

    Attributes:
        check: ``check(target, schedule, method)`` raises a ``ScheduleError`` or
            ``UnsupportedModelError`` for anything the method cannot run on ``target``. ``apply``
            calls it for every schedule that names the method, pruning or not, before it touches
            the pipeline, so a refused schedule leaves the previous one in place.
        install: ``install(patcher, target, state, method)`` wraps and hooks ``target``'s modules,
            only through ``patcher``, and only when the schedule prunes. Whatever it did before
            raising is undone by ``apply``, but everything that can be known up front belongs in
            ``check``.
        check_latent: ``check_latent(target, schedule, method, latent_hw)`` refuses, at the first
            call of each generation and before any work, what depends on the latent size (e.g. a
            ratio that would prune base tokens on an odd grid). ``schedule`` is the one in force
            (resampled when ``apply(..., resample=True)`` stretched it).
    """

    check: Callable[[PatchTarget, Schedule, Method], None]
    install: Callable[[Patcher, PatchTarget, RunState, Method], None]
    check_latent: Callable[[PatchTarget, Schedule, Method, tuple[int, int]], None] = _no_latent_limit


def require_unet(target: PatchTarget, method: TokenMethod) -> UNet2DConditionModel:
    """The UNet of a method that prunes UNet attention blocks, or the error that says a DiT prunes with CAT."""
    if target.unet is None:
        raise ScheduleError(f"method {method.name!r} prunes UNet attention blocks; a DiT pipeline (SD3, PixArt-Σ) prunes with method 'cat'")
    return target.unet
