"""``apply(pipe, schedule)`` and ``remove(pipe)``: the one call that accelerates a diffusers UNet pipeline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diffusers import UNet2DConditionModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

from prunesched.errors import ScheduleError, UnsupportedModelError
from prunesched.runtime.caching import install_caching
from prunesched.runtime.atedm_pruning import install_atedm
from prunesched.runtime.methods import AtedmConfig, DatoConfig, SimilarityMethod
from prunesched.runtime.patcher import Patcher
from prunesched.runtime.pruning import check_prune_limits, install_pruning
from prunesched.runtime.schedule import Cache, Schedule
from prunesched.runtime.state import RunState, StepRecord
from prunesched.runtime.tracking import StepTracker
from prunesched.runtime.unet_layout import CacheUnit, Slot, cache_units, prune_less_blocks, select_slots

_ATTRIBUTE = "_prunesched_handle"
_MULTI_CHUNK_CFG = ("PAG", "InstructPix2Pix")
"""Pipelines whose guidance batch is not two halves [uncond, cond] (perturbed-attention guidance, image guidance)."""


def apply(pipe: Any, schedule: Schedule, *, resample: bool = False) -> PatchHandle:
    """Accelerate ``pipe`` with ``schedule`` until :func:`remove` (or the returned handle's ``remove``).

    Works with diffusers pipelines whose denoiser is a ``UNet2DConditionModel`` (SD 1.x/2.x,
    SDXL, and their img2img and inpaint variants). Applying again replaces the previous
    schedule; nothing stacks, and a schedule that fails validation leaves the previous one in
    place. The schedule must have one step per position of the scheduler's timesteps; with
    ``resample=True`` a schedule of another length is stretched to fit (see
    :meth:`Schedule.resample`) instead of raising.

    The handle is also a context manager: ``with prunesched.apply(pipe, s) as h: pipe(...)``
    removes the patch on exit; ``h.records`` tells what each step of the last generation did.
    """
    unet = getattr(pipe, "unet", None)
    if not isinstance(unet, UNet2DConditionModel):
        raise UnsupportedModelError(
            f"prunesched.apply needs a pipeline with a UNet2DConditionModel at pipe.unet; got {type(unet).__name__}"
        )
    if getattr(pipe, "scheduler", None) is None:
        raise UnsupportedModelError("prunesched.apply needs a pipeline with a scheduler at pipe.scheduler")
    if not isinstance(schedule, Schedule):
        raise ScheduleError(f"expected a prunesched.Schedule, got {type(schedule).__name__}; use Schedule.load(path)")
    if schedule.prunes and isinstance(schedule.method, SimilarityMethod) and schedule.method.align_cfg and any(k in type(pipe).__name__ for k in _MULTI_CHUNK_CFG):
        raise UnsupportedModelError(
            f"{type(pipe).__name__} batches guidance in more than two chunks, so CFG alignment would mix samples; "
            "use a method with align_cfg=false"
        )
    slots = select_slots(unet, schedule)
    units = cache_units(unet, {s.cache for s in schedule.steps if isinstance(s.cache, int)})
    remove(pipe)
    return PatchHandle(pipe, schedule, slots, units, resample)


def remove(pipe: Any) -> None:
    """Undo :func:`apply`; the pipeline behaves bit-identically to before. Does nothing if it is not patched."""
    handle = getattr(getattr(pipe, "unet", None), _ATTRIBUTE, None)
    if handle is not None:
        handle.remove()


class PatchHandle:
    """A schedule applied to a pipeline: what it did last generation, and how to take it off."""

    def __init__(self, pipe: Any, schedule: Schedule, slots: list[Slot], units: list[CacheUnit], resample: bool) -> None:
        unet = pipe.unet
        self.pipe = pipe
        self.schedule = schedule
        self.slots = slots
        """The transformer blocks the schedule prunes (see :func:`~prunesched.runtime.unet_layout.select_slots`)."""
        self._resample = resample
        self._state = RunState(schedule, prune_less_blocks(unet, schedule))
        self._tracker = StepTracker(pipe)
        self._patcher = Patcher()

        install_caching(self._patcher, units, self._state)
        method = schedule.method
        if schedule.prunes and isinstance(method, AtedmConfig):
            install_atedm(self._patcher, slots, self._state, method)
        elif schedule.prunes:
            install_pruning(self._patcher, slots, self._state)
            if isinstance(method, DatoConfig):
                feature = unet.up_blocks[-1] if method.diff_source == "up_block" else unet.conv_out
                hook = feature.register_forward_hook(lambda _m, _i, out: self._state.record_feature(out))
                self._patcher.on_undo(hook.remove)
        self._patcher.replace_method(unet, "forward", self._wrap_unet)
        setattr(unet, _ATTRIBUTE, self)
        self._patcher.on_undo(lambda: delattr(unet, _ATTRIBUTE))
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

    def _wrap_unet(self, original: Callable[..., Any]) -> Callable[..., Any]:
        state = self._state

        def forward(*args: Any, **kwargs: Any) -> Any:
            sample = args[0] if args else kwargs["sample"]
            timestep = args[1] if len(args) > 1 else kwargs["timestep"]
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
                return UNet2DConditionOutput(sample=reused) if kwargs.get("return_dict", True) else (reused,)
            cfg = bool(getattr(self.pipe, "do_classifier_free_guidance", False))
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
