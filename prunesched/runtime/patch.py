"""``apply(pipe, schedule)`` and ``remove(pipe)``: the one call that accelerates a diffusers pipeline (UNet or DiT)."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from diffusers import UNet2DConditionModel
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput
from torch import nn

from prunesched.errors import ScheduleError, UnsupportedModelError
from prunesched.runtime import atedm_pruning, cat_pruning, similarity_pruning
from prunesched.runtime.block_caching import install_block_caching
from prunesched.runtime.caching import install_caching
from prunesched.runtime.compiling import around, uncompiled
from prunesched.runtime.controlnet import controlnet_units, find_controlnet, gate_controlnet
from prunesched.runtime.dit_layout import DIT_TYPES, BlockPlan, block_plan
from prunesched.runtime.forecast import recall, remember
from prunesched.runtime.methods import AtedmConfig, CatConfig, DatoConfig, RandomConfig, SitoConfig, TokenMethod
from prunesched.runtime.patcher import Patcher
from prunesched.runtime.pruner import Denoiser, PatchTarget, Pruner
from prunesched.runtime.schedule import BlockCache, Cache, Schedule, StepPlan
from prunesched.runtime.state import RunState, StepRecord
from prunesched.runtime.tracking import Position, StepTracker
from prunesched.runtime.unet_layout import CacheUnit, cache_units, prune_less_blocks, select_slots

_ATTRIBUTE = "_prunesched_handle"

PRUNERS: dict[type[TokenMethod], Pruner[Any]] = {
    SitoConfig: similarity_pruning.SITO,
    DatoConfig: similarity_pruning.DATO,
    RandomConfig: similarity_pruning.RANDOM,
    AtedmConfig: atedm_pruning.ATEDM,
    CatConfig: cat_pruning.CAT,
}
"""The runtime of each token method, by the type of its configuration (see docs/runtime.md, "Adding a method")."""


def apply(pipe: Any, schedule: Schedule, *, resample: bool = False) -> PatchHandle:
    """Accelerate ``pipe`` with ``schedule`` until :func:`remove` (or the returned handle's ``remove``).

    Works with diffusers pipelines whose denoiser is a ``UNet2DConditionModel`` at ``pipe.unet``
    (SD 1.x/2.x, SDXL, and their img2img and inpaint variants: every method but ``cat``) or an
    ``SD3Transformer2DModel``, ``PixArtTransformer2DModel`` or ``FluxTransformer2DModel`` at
    ``pipe.transformer`` (SD3, PixArt-Σ, Flux: block-cache and reuse steps, and method ``cat`` on
    SD3 and PixArt-Σ). Applying again replaces the previous
    schedule; nothing stacks. ``apply`` is all or nothing: a schedule that is refused, or any
    error while patching, leaves the pipeline exactly as it was, the previous schedule still in
    place.

    The schedule has one step per iteration of the whole denoising loop, i.e. per position of the
    scheduler's timesteps after ``set_timesteps``, whatever the pipeline runs of it: img2img and
    inpaint below strength 1 run only the last iterations (at strength 0.6 and 50 DDIM steps,
    iterations 20-49), each with the step of its position, so a schedule exported for
    text-to-image at the same ``num_inference_steps`` applies unchanged and every noise level gets
    the plan made for it. The first iteration that runs computes the whole network whatever cache
    its step asks for, as none exists yet. A schedule of another length is an error naming the
    loop's length and the iterations that run; with ``resample=True`` it is stretched to the whole
    loop instead (see :meth:`Schedule.resample`), and its tail runs likewise.

    The handle is also a context manager: ``with prunesched.apply(pipe, s) as h: pipe(...)``
    removes the patch on exit; ``h.records`` tells what each step of the last generation did.
    """
    denoiser = find_denoiser(pipe)
    if getattr(pipe, "scheduler", None) is None:
        raise UnsupportedModelError("prunesched.apply needs a pipeline with a scheduler at pipe.scheduler")
    if not isinstance(schedule, Schedule):
        raise ScheduleError(f"expected a prunesched.Schedule, got {type(schedule).__name__}; use Schedule.load(path)")
    pruner = next((PRUNERS[cls] for cls in type(schedule.method).__mro__ if cls in PRUNERS), None)  # a subclass runs as its base
    if pruner is None:
        raise ScheduleError(f"method {schedule.method.name!r} has no runtime; valid: {', '.join(cls.name for cls in PRUNERS)}")
    controlnet: nn.Module | None = None
    if isinstance(denoiser, UNet2DConditionModel):
        _check_unet_schedule(schedule)
        target = PatchTarget(pipe, denoiser, select_slots(denoiser, schedule))
        units = cache_units(denoiser, {s.cache for s in schedule.steps if isinstance(s.cache, int)})
        controlnet = find_controlnet(pipe)
        units += controlnet_units(controlnet, denoiser, units) if controlnet is not None else []
        prune_less = prune_less_blocks(denoiser, schedule)
        blocks = None
    else:
        _check_dit_schedule(schedule)
        target, units, prune_less = PatchTarget(pipe, denoiser, []), [], frozenset()
        blocks = block_plan(denoiser, schedule)
        if blocks.starts and getattr(pipe, "controlnet", None) is not None:
            raise UnsupportedModelError(
                f"block-cache steps do not run {type(pipe).__name__}: its ControlNet adds residuals between the transformer "
                "blocks a cached step skips; use full and reuse steps, or the pipeline without ControlNet"
            )
    pruner.check(target, schedule, schedule.method)
    handle = PatchHandle(target, schedule, pruner, units, blocks, prune_less, resample, controlnet)
    previous = _handles(pipe)
    for old in previous:
        old.remove()
    try:
        handle._install()
    except BaseException:
        for old in reversed(previous):  # put back exactly what was there: the same handles, on the same modules
            old._install()
        raise
    return handle


def remove(pipe: Any) -> None:
    """Undo :func:`apply`; the pipeline behaves bit-identically to before. Does nothing if it is not patched."""
    for handle in _handles(pipe):
        handle.remove()


def _handles(pipe: Any) -> list[PatchHandle]:
    """The handles applied to ``pipe.unet`` and ``pipe.transformer``."""
    found = (getattr(getattr(pipe, name, None), _ATTRIBUTE, None) for name in ("unet", "transformer"))
    return [handle for handle in found if handle is not None]


def find_denoiser(pipe: Any) -> Denoiser:
    """The network a schedule governs: ``pipe.unet`` (a ``UNet2DConditionModel``) or ``pipe.transformer`` (SD3, PixArt,
    Flux), or the module ``torch.compile`` wrapped there."""
    unet, transformer = uncompiled(getattr(pipe, "unet", None)), uncompiled(getattr(pipe, "transformer", None))
    if isinstance(unet, UNet2DConditionModel):
        return unet
    if isinstance(transformer, DIT_TYPES):
        return transformer
    found = type(unet if unet is not None else transformer).__name__
    raise UnsupportedModelError(
        "prunesched.apply needs a pipeline with a UNet2DConditionModel at pipe.unet, or an SD3Transformer2DModel, "
        f"PixArtTransformer2DModel or FluxTransformer2DModel at pipe.transformer; got {found}"
    )


def _check_unet_schedule(schedule: Schedule) -> None:
    """A UNet's partial steps are DeepCache branches: a DiT's explicit block cache means nothing to it."""
    for i, step in enumerate(schedule.steps):
        if isinstance(step.cache, BlockCache):
            raise ScheduleError(f"step {i}: cache {step.cache} is a DiT block cache; a UNet's partial steps are DeepCache branch ids >= 0")


def _check_dit_schedule(schedule: Schedule) -> None:
    """A DiT schedule names no UNet blocks (its block-cache steps are checked by ``block_plan``, its method by its pruner)."""
    if schedule.prune_less is not None or not isinstance(schedule.slots, str):
        raise ScheduleError(
            "prune_less and a list of slots name UNet attention blocks; a DiT schedule has neither (CAT prunes every block)"
        )


class PatchHandle:
    """A schedule applied to a pipeline: what it did last generation, and how to take it off."""

    def __init__(
        self,
        target: PatchTarget,
        schedule: Schedule,
        pruner: Pruner[Any],
        units: list[CacheUnit],
        blocks: BlockPlan | None,
        prune_less: frozenset[str],
        resample: bool,
        controlnet: nn.Module | None = None,
    ) -> None:
        """Everything the patch needs, checked by :func:`apply`; nothing is patched until ``_install``."""
        self.pipe = target.pipe
        self.schedule = schedule
        self.slots = target.slots
        """The transformer blocks the schedule prunes (see :func:`~prunesched.runtime.unet_layout.select_slots`)."""
        self._target = target
        self._pruner = pruner
        self._units = units
        self._blocks = blocks
        self._controlnet = controlnet
        self._resample = resample
        self._output_type = UNet2DConditionOutput if target.unet is not None else Transformer2DModelOutput
        self._state = RunState(schedule, prune_less)
        self._tracker = StepTracker(target.pipe)
        self._patcher = Patcher()

    def _install(self) -> None:
        """Patch the pipeline, all or nothing: if anything raises, what was already done is undone first."""
        denoiser = self._target.denoiser
        try:
            install_caching(self._patcher, self._units, self._state)
            if self._blocks is not None:
                install_block_caching(self._patcher, self._blocks, self._state)
            if self.schedule.prunes:
                self._pruner.install(self._patcher, self._target, self._state, self.schedule.method)
            self._patcher.replace_method(denoiser, "forward", self._wrap_denoiser)
            if self._controlnet is not None:
                self._patcher.replace_method(self._controlnet, "forward", self._wrap_controlnet)
            setattr(denoiser, _ATTRIBUTE, self)
            self._patcher.on_undo(lambda: delattr(denoiser, _ATTRIBUTE))
            self._patcher.on_undo(self._tracker.detach)
        except BaseException:
            self._patcher.undo()
            raise

    @property
    def records(self) -> list[StepRecord]:
        """One record per denoising-loop iteration of the last generation (see :class:`StepRecord`)."""
        return list(self._state.records)

    def remove(self) -> None:
        """Restore the pipeline's original behaviour."""
        self._patcher.undo()

    def time_selection(self, timer: Callable[[], AbstractContextManager[object]] | None) -> None:
        """Run every token selection inside ``timer()``, e.g. a stopwatch region; ``None`` stops.

        Token selection is the part a method adds besides gathering and scattering tokens: the
        plan of SiTo, DaTo (with its DiffScore) and random pruning, AT-EDM's choice from its G-WPR
        scores, CAT's choice of the tokens to recompute. Benchmarks use it to time that part alone.
        """
        self._state.selection_timer = timer or contextlib.nullcontext

    def __enter__(self) -> PatchHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _wrap_denoiser(self, original: Callable[..., Any]) -> Callable[..., Any]:
        state = self._state
        signature = inspect.signature(original)
        sample_name = next(iter(signature.parameters))  # sample (UNet) or hidden_states (DiT)

        def before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[int, Cache], Any]:
            """Locate, decide and record the call; a reuse step's output, or None when the network runs."""
            inputs = signature.bind_partial(*args, **kwargs).arguments
            sample = inputs[sample_name]
            position, step = self._locate(sample, inputs["timestep"])
            performed, missing, forecast = self._decide(step, position.stream)
            if position.stream == 0:
                state.records.append(StepRecord(position.iteration, step.cache, performed, missing, step.prune, forecast=forecast))
            else:
                record = state.records[-1]
                record.denoiser_calls += 1
                record.cache_missing |= missing  # e.g. SD3's skip-layer call, which starts after the first step
                record.forecast = min(record.forecast, forecast)
            if performed == "reuse":
                reused = recall(state.outputs[position.stream], state.position_of(position.iteration), forecast).clone()
                output = self._output_type(sample=reused) if kwargs.get("return_dict", True) else (reused,)
                return (position.stream, performed), output
            cfg = getattr(self.pipe, "do_classifier_free_guidance", None)
            branch = performed if isinstance(performed, (int, BlockCache)) else None
            if branch is not None and kwargs.get("down_intrablock_additional_residuals") is not None:
                raise UnsupportedModelError(
                    "cache steps cannot be combined with T2I-Adapter residuals (the UNet adds them in place to cached features)"
                )
            state.begin_call(position.iteration, position.stream, branch, step.prune, tuple(sample.shape[-2:]), cfg, forecast)
            return (position.stream, performed), None

        def after(output: Any, call: tuple[int, Cache]) -> None:
            stream, performed = call
            sample = output[0] if isinstance(output, tuple) else output.sample
            state.outputs[stream] = remember(state.outputs.get(stream), state.position, sample, state.keep)
            if performed == "full":
                state.full_steps[stream] += 1

        return around(original, before, after)

    def _wrap_controlnet(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def step_of(sample: Any, timestep: Any) -> tuple[int, Cache]:
            """The ControlNet's call feeds the UNet call that follows it: the same stream, the same step."""
            position, step = self._locate(sample, timestep, count=False)
            return position.stream, self._decide(step, position.stream)[0]

        return gate_controlnet(original, self._state, step_of)

    def _locate(self, sample: Any, timestep: Any, count: bool = True) -> tuple[Position, StepPlan]:
        """Where a call sits in the loop and the step the schedule asks for there; a generation's first call starts it.

        ``count=False`` for a call that does not advance the stream (the ControlNet's, which comes before the UNet's).
        """
        position = self._tracker.locate(timestep, count=count)
        if position.new_generation:
            self._start_generation(position.loop_length, sample)
        return position, self._state.schedule.steps[position.iteration]

    def _start_generation(self, loop_length: int, sample: Any) -> None:
        """Fit the schedule to the whole loop, of which img2img below strength 1 runs the tail (see :func:`apply`); check the latent."""
        state = self._state
        if len(self.schedule) == loop_length:
            state.schedule = self.schedule
        elif self._resample:
            state.schedule = self.schedule.resample(loop_length)
        else:
            n, first = loop_length, self._tracker.first_iteration
            running = f"; iterations {first}-{n - 1} of {n} run at this strength, and a schedule covers all {n}" if first else ""
            raise ScheduleError(
                f"schedule has {len(self.schedule)} steps but this pipeline's denoising loop has {n} iterations "
                f"(len(scheduler.timesteps)){running}; use schedule.resample({n}) or apply(..., resample=True)"
            )
        if state.schedule.prunes:
            self._pruner.check_latent(self._target, state.schedule, state.schedule.method, (sample.shape[-2], sample.shape[-1]))
        state.reset(sample.device)

    def _decide(self, step: StepPlan, stream: int) -> tuple[Cache, bool, int]:
        """What to do for a step: the cache choice performed (a full step when its cache does not exist yet), whether
        that fallback happened, and the forecast order, lowered to what the stream's full steps so far allow."""
        state, cache = self._state, step.cache
        performed: Cache
        if cache == "reuse":
            performed, missing = ("reuse", False) if stream in state.outputs else ("full", True)
        elif isinstance(cache, (int, BlockCache)):
            performed, missing = (cache, False) if state.full_steps[stream] else ("full", True)
        else:
            performed, missing = "full", False
        return performed, missing, 0 if performed == "full" else min(step.forecast, state.full_steps[stream] - 1)
