"""The state a patched pipeline carries through one generation, and the record it leaves behind."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from prunesched.runtime.forecast import Points
from prunesched.runtime.schedule import BlockCache, Cache, Schedule


@dataclass
class StepRecord:
    """What one iteration of the denoising loop actually did.

    Attributes:
        index: the iteration, i.e. the position in the scheduler's timesteps.
        requested: the cache choice the schedule asked for.
        performed: what was done: ``"full"``, a branch id, or ``"reuse"``.
        cache_missing: the requested cache did not exist yet (a cache branch or reuse before any full
            step; CAT pruning before two computed steps), so the step was computed in full.
        prune: the prune ratio in force.
        tokens: per slot of a pruning step, ``(tokens the slot computed on, all tokens)``: the
            tokens that entered self-attention for SiTo, DaTo and random; for AT-EDM, all tokens
            in a block's first layer and the kept ones after it; all tokens in a block DSAP holds; for
            CAT, ``"transformer"``: the image tokens recomputed in each CFG half.
        denoiser_calls: calls of the UNet or transformer in this iteration that did work or reused (2 for non-batched CFG).
        forecast: the forecast order the step ran at: the step's own, or lower while the generation has had fewer
            than ``forecast + 1`` full steps (each cached value is extrapolated through that many); 0 on full steps.
    """

    index: int
    requested: Cache
    performed: Cache
    cache_missing: bool
    prune: float
    tokens: dict[str, tuple[int, int]] = field(default_factory=dict)
    denoiser_calls: int = 1
    forecast: int = 0


class RunState:
    """Per-generation state shared by the denoiser wrapper, the cache wrappers and the pruning wrappers:
    the loop position of the current call, the records, the method's generators and the caches.

    Caches, previous outputs and each method's own state (in :meth:`cache`) are kept per *stream*
    (the n-th denoiser call of an iteration), so pipelines that run CFG as two calls keep their
    halves apart. Cached values and outputs are :data:`~prunesched.runtime.forecast.Points`: the last
    ``keep`` computed values with their loop positions, ``keep`` being one more than the schedule's
    highest forecast order.
    """

    def __init__(self, schedule: Schedule, prune_less: frozenset[str] = frozenset()) -> None:
        self.schedule = schedule
        self.prune_less = prune_less
        """The attention blocks that prune nothing in the schedule's first ``prune_less.steps`` iterations."""
        self.records: list[StepRecord] = []
        self.iteration = 0
        self.stream = 0
        self.branch: int | BlockCache | None = None
        """The partial step of the current call: a UNet's DeepCache branch, a DiT's depth or block cache; None for a full step."""
        self.token_index: Tensor | None = None
        """The image tokens ``(B, k)`` the current DiT call computes when CAT prunes it; None when it computes all."""
        self.prune = 0.0
        self.forecast = 0
        """The forecast order of the current call (see :class:`StepRecord`)."""
        self.position: Tensor | None = None
        """The current call's loop position as cached values record it (:meth:`position_of`)."""
        self.keep = 1
        """How many computed values each cached tensor keeps: one more than the schedule's highest forecast order."""
        self.latent_hw: tuple[int, int] = (0, 0)
        self.cfg: bool | None = False
        """Whether the batch is a CFG pair [uncond, cond]; None when the pipeline does not say (PixArt)."""
        self._device = torch.device("cpu")
        self._generators: dict[int, torch.Generator] = {}
        self.caches: dict[int, dict[str, Any]] = {}
        self.full_steps: Counter[int] = Counter()
        """Full steps run so far in this generation, per stream."""
        self.outputs: dict[int, Points] = {}
        """The last ``keep`` outputs of each stream's computed calls, which reuse steps copy or extrapolate."""
        self.selection_timer: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext
        """What every token selection runs inside (see :meth:`PatchHandle.time_selection`); by default nothing."""

    def reset(self, device: torch.device) -> None:
        """Forget everything from the previous generation; the method's generators restart from its seed."""
        self.records.clear()
        self.caches.clear()
        self.full_steps.clear()
        self.outputs.clear()
        self._generators.clear()
        self._device = device
        self.keep = self.schedule.forecast + 1

    @property
    def generator(self) -> torch.Generator:
        """The method's random generator for the current stream, so one stream's draws never shift another's."""
        if self.stream not in self._generators:
            self._generators[self.stream] = torch.Generator(device=self._device).manual_seed(self.schedule.method.seed)
        return self._generators[self.stream]

    def begin_call(
        self,
        iteration: int,
        stream: int,
        branch: int | BlockCache | None,
        prune: float,
        latent_hw: tuple[int, int],
        cfg: bool | None,
        forecast: int,
    ) -> None:
        self.iteration, self.stream, self.branch, self.prune, self.latent_hw, self.cfg = iteration, stream, branch, prune, latent_hw, cfg
        self.forecast, self.position = forecast, self.position_of(iteration)
        self.token_index = None

    def position_of(self, iteration: int) -> Tensor | None:
        """Loop iteration ``iteration`` as cached values record it: a 0-d tensor on the model's device when the schedule
        forecasts (compiled code then reads it as an input, not a constant), None when it does not (nothing reads it)."""
        return torch.tensor(float(iteration), device=self._device) if self.keep > 1 else None

    def ratio(self, attention_block: str) -> float:
        """The prune ratio of ``attention_block`` in the current call: the step's, or 0 while DSAP keeps the block prune-less."""
        prune_less = self.schedule.prune_less
        if prune_less is not None and self.iteration < prune_less.steps and attention_block in self.prune_less:
            return 0.0
        return self.prune

    def cache(self) -> dict[str, Any]:
        """The current stream's store for this generation: cached module outputs by module path, and each
        method's own per-stream state under the method's name (``"cat"``, ``"dato"``)."""
        return self.caches.setdefault(self.stream, {})

    def selecting(self) -> AbstractContextManager[object]:
        """The context every method runs its token selection in: the handle's selection timer, if one is set."""
        return self.selection_timer()

    def record_held(self, slots: list[str], tokens: int) -> None:
        """In a step that prunes, record ``slots`` DSAP holds prune-less with all their tokens (records show which blocks pruned)."""
        if self.prune > 0:
            for slot in slots:
                self.record_tokens(slot, tokens, tokens)

    def record_missing(self) -> None:
        """The current step asked for something whose cache does not exist yet, so it is computed in full."""
        if self.records:
            self.records[-1].cache_missing = True

    def record_tokens(self, slot: str, kept: int, total: int) -> None:
        if self.records:
            self.records[-1].tokens[slot] = (kept, total)
