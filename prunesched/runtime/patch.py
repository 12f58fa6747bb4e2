"""``apply(pipe, schedule)`` and ``remove(pipe)``: the one call that accelerates a diffusers pipeline (UNet or DiT)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from diffusers import PixArtTransformer2DModel, SD3Transformer2DModel, UNet2DConditionModel
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput
from torch import nn

from prunesched.errors import ScheduleError, UnsupportedModelError
from prunesched.runtime.atedm_pruning import install_atedm
from prunesched.runtime.caching import install_caching
from prunesched.runtime.cat_pruning import check_cat_pipeline, install_cat
from prunesched.runtime.methods import AtedmConfig, CatConfig, DatoConfig, SimilarityMethod
from prunesched.runtime.patcher import Patcher
from prunesched.runtime.pruning import check_prune_limits, install_pruning
from prunesched.runtime.schedule import Cache, Schedule
from prunesched.runtime.state import RunState, StepRecord
from prunesched.runtime.tracking import StepTracker
from prunesched.runtime.unet_layout import CacheUnit, Slot, cache_units, prune_less_blocks, select_slots

_ATTRIBUTE = "_prunesched_handle"
_DITS = (SD3Transformer2DModel, PixArtTransformer2DModel)
_MULTI_CHUNK_CFG = ("PAG", "InstructPix2Pix")
"""Pipelines whose guidance batch is not two halves [uncond, cond] (perturbed-attention guidance, image guidance)."""


def apply(pipe: Any, schedule: Schedule, *, resample: bool = False) -> PatchHandle:
    """Accelerate ``pipe`` with ``schedule`` until :func:`remove` (or the returned handle's ``remove``).

    Works with diffusers pipelines whose denoiser is a ``UNet2DConditionModel`` at ``pipe.unet``
    (SD 1.x/2.x, SDXL, and their img2img and inpaint variants: every method but ``cat``) or an
    ``SD3Transformer2DModel`` or ``PixArtTransformer2DModel`` at ``pipe.transformer`` (SD3,
    PixArt-Σ: method ``cat``, and ``full``/``reuse`` steps). Applying again replaces the previous
    schedule; nothing stacks, and a schedule that fails validation leaves the previous one in
    place. The schedule must have one step per position of the scheduler's timesteps; with
    ``resample=True`` a schedule of another length is stretched to fit (see
    :meth:`Schedule.resample`) instead of raising.

    The handle is also a context manager: ``with prunesched.apply(pipe, s) as h: pipe(...)``
    removes the patch on exit; ``h.records`` tells what each step of the last generation did.
    """
    denoiser = find_denoiser(pipe)
    if getattr(pipe, "scheduler", None) is None:
        raise UnsupportedModelError("prunesched.apply needs a pipeline with a scheduler at pipe.scheduler")
    if not isinstance(schedule, Schedule):
        raise ScheduleError(f"expected a prunesched.Schedule, got {type(schedule).__name__}; use Schedule.load(path)")
    if isinstance(denoiser, UNet2DConditionModel):
        _check_unet_schedule(pipe, schedule)
        slots = select_slots(denoiser, schedule)
        units = cache_units(denoiser, {s.cache for s in schedule.steps if isinstance(s.cache, int)})
    else:
        _check_dit_schedule(schedule)
        if schedule.prunes:
            check_cat_pipeline(pipe, denoiser)
        slots, units = [], []
    remove(pipe)
    return PatchHandle(pipe, denoiser, schedule, slots, units, resample)


def remove(pipe: Any) -> None:
    """Undo :func:`apply`; the pipeline behaves bit-identically to before. Does nothing if it is not patched."""
    for name in ("unet", "transformer"):
        handle = getattr(getattr(pipe, name, None), _ATTRIBUTE, None)
        if handle is not None:
            handle.remove()


def find_denoiser(pipe: Any) -> nn.Module:
    """The network a schedule governs: ``pipe.unet`` (a ``UNet2DConditionModel``) or ``pipe.transformer`` (SD3, PixArt)."""
    unet, transformer = getattr(pipe, "unet", None), getattr(pipe, "transformer", None)
    if isinstance(unet, UNet2DConditionModel):
        return unet
    if isinstance(transformer, _DITS):
        return transformer
    found = type(unet if unet is not None else transformer).__name__
    raise UnsupportedModelError(
        "prunesched.apply needs a pipeline with a UNet2DConditionModel at pipe.unet, or an SD3Transformer2DModel or "
        f"PixArtTransformer2DModel at pipe.transformer; got {found}"
    )


def _check_unet_schedule(pipe: Any, schedule: Schedule) -> None:
    if isinstance(schedule.method, CatConfig):
        raise ScheduleError("method 'cat' prunes the tokens of a DiT (SD3, PixArt-Σ); for a UNet pipeline use sito, dato, random or atedm")
    if (
        schedule.prunes
        and isinstance(schedule.method, SimilarityMethod)
        and schedule.method.align_cfg
        and any(k in type(pipe).__name__ for k in _MULTI_CHUNK_CFG)
    ):
        raise UnsupportedModelError(
            f"{type(pipe).__name__} batches guidance in more than two chunks, so CFG alignment would mix samples; "
            "use a method with align_cfg=false"
        )


def _check_dit_schedule(schedule: Schedule) -> None:
    """A DiT schedule: CAT pruning, whole-network steps, and nothing that names UNet blocks."""
    if schedule.prunes and not isinstance(schedule.method, CatConfig):
        raise ScheduleError(
            f"method {schedule.method.name!r} prunes UNet attention blocks; a DiT pipeline (SD3, PixArt-Σ) prunes with method 'cat'"
        )
    for i, step in enumerate(schedule.steps):
        if step.cache not in ("full", "reuse"):
            raise ScheduleError(f"step {i}: cache {step.cache!r} is a UNet cache branch; a DiT pipeline's steps are 'full' or 'reuse'")
    if schedule.prune_less is not None or not isinstance(schedule.slots, str):
        raise ScheduleError(
            "prune_less and a list of slots name UNet attention blocks; a DiT schedule has neither (CAT prunes every block)"
        )


class PatchHandle:
    """A schedule applied to a pipeline: what it did last generation, and how to take it off."""

    def __init__(
        self, pipe: Any, denoiser: nn.Module, schedule: Schedule, slots: list[Slot], units: list[CacheUnit], resample: bool
    ) -> None:
        self.pipe = pipe
        self.schedule = schedule
        self.slots = slots
        """The transformer blocks the schedule prunes (see :func:`~prunesched.runtime.unet_layout.select_slots`)."""
        self._resample = resample
        unet = denoiser if isinstance(denoiser, UNet2DConditionModel) else None
        self._output_type = UNet2DConditionOutput if unet is not None else Transformer2DModelOutput
        self._state = RunState(schedule, prune_less_blocks(unet, schedule) if unet is not None else frozenset())
        self._tracker = StepTracker(pipe)
        self._patcher = Patcher()

        install_caching(self._patcher, units, self._state)
        method = schedule.method
        if schedule.prunes and isinstance(method, CatConfig):
            install_cat(self._patcher, denoiser, self._state, method)
        elif schedule.prunes and isinstance(method, AtedmConfig):
            install_atedm(self._patcher, slots, self._state, method)
        elif schedule.prunes:
            install_pruning(self._patcher, slots, self._state)
            if isinstance(method, DatoConfig) and unet is not None:
                feature = unet.up_blocks[-1] if method.diff_source == "up_block" else unet.conv_out
                hook = feature.register_forward_hook(lambda _m, _i, out: self._state.record_feature(out))
                self._patcher.on_undo(hook.remove)
        self._patcher.replace_method(denoiser, "forward", self._wrap_denoiser)
        setattr(denoiser, _ATTRIBUTE, self)
        self._patcher.on_undo(lambda: delattr(denoiser, _ATTRIBUTE))
        self._patcher.on_undo(self._tracker.detach)

    @property
    def records(self) -> list[StepRecord]:
        """One record per denoising-loop iteration of the last generation (see :class:`StepRecord`)."""
        return list(self._state.records)

    def remove(self) -> None:
        """Restore the pipeline's original behaviour."""
        self._patcher.undo()

    def __enter__(self) -> PatchHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _wrap_denoiser(self, original: Callable[..., Any]) -> Callable[..., Any]:
        state = self._state
        signature = inspect.signature(original)
        sample_name = next(iter(signature.parameters))  # sample (UNet) or hidden_states (DiT)

        def forward(*args: Any, **kwargs: Any) -> Any:
            inputs = signature.bind_partial(*args, **kwargs).arguments
            sample, timestep = inputs[sample_name], inputs["timestep"]
            position = self._tracker.locate(timestep)
            if position.new_generation:
                self._start_generation(position.loop_length, sample)
            step = state.schedule.steps[position.iteration]
            performed, missing = self._decide(step.cache, position.stream)
            if position.stream == 0:
                state.records.append(StepRecord(position.iteration, step.cache, performed, missing, step.prune))
            else:
                state.records[-1].unet_calls += 1
            if performed == "reuse":
                reused = state.last_output[position.stream].clone()
                return self._output_type(sample=reused) if kwargs.get("return_dict", True) else (reused,)
            cfg = getattr(self.pipe, "do_classifier_free_guidance", None)
            branch = performed if isinstance(performed, int) else None
            if branch is not None and kwargs.get("down_intrablock_additional_residuals") is not None:
                raise UnsupportedModelError(
                    "cache steps cannot be combined with T2I-Adapter residuals (the UNet adds them in place to cached features)"
                )
            state.begin_call(position.iteration, position.stream, branch, step.prune, tuple(sample.shape[-2:]), cfg)
            output = original(*args, **kwargs)
            result = output[0] if isinstance(output, tuple) else output.sample
            state.last_output[position.stream] = result
            if performed == "full":
                state.has_full.add(position.stream)
            return output

        return forward

    def _start_generation(self, loop_length: int, sample: Any) -> None:
        state = self._state
        if len(self.schedule) != loop_length:
            if not self._resample:
                raise ScheduleError(
                    f"schedule has {len(self.schedule)} steps but this pipeline's denoising loop has {loop_length} "
                    f"iterations (len(scheduler.timesteps)); use schedule.resample({loop_length}) or apply(..., resample=True)"
                )
            state.schedule = self.schedule.resample(loop_length)
        else:
            state.schedule = self.schedule
        check_prune_limits(self.slots, state.schedule, tuple(sample.shape[-2:]))
        state.reset(sample.device)

    def _decide(self, cache: Cache, stream: int) -> tuple[Cache, bool]:
        """What to do for a requested cache choice: it falls back to a full step when its cache does not exist yet."""
        state = self._state
        if cache == "reuse":
            return ("reuse", False) if stream in state.last_output else ("full", True)
        if isinstance(cache, int):
            return (cache, False) if stream in state.has_full else ("full", True)
        return "full", False
