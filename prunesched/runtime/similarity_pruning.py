"""SiTo, DaTo and random pruning in a UNet: in the self-attention of each slot, prune, attend, recover.

The three methods share everything but the plan, i.e. how the kept tokens are chosen: each has
its own ``install`` that hands its plan function to the shared attention wrapper. DaTo also
hooks the feature whose change between steps is its DiffScore, and keeps that history per
stream in a :class:`DatoStream`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from torch import Tensor, nn

from prunesched.errors import ScheduleError, UnsupportedModelError
from prunesched.runtime.methods import DatoConfig, RandomConfig, SimilarityMethod, SitoConfig
from prunesched.runtime.patcher import Patcher
from prunesched.runtime.pruner import PatchTarget, Pruner, require_unet
from prunesched.runtime.schedule import Schedule
from prunesched.runtime.state import RunState
from prunesched.runtime.tokens import TokenPlan, dato_plan, diff_score, num_cells, random_plan, sito_plan
from prunesched.runtime.unet_layout import Slot, token_grid

Plan = Callable[[Tensor, tuple[int, int], int], TokenPlan]
"""``plan(x, grid, num_prune)``: which of the ``(B, N, C)`` tokens ``x`` on an ``h x w`` grid are attended."""

MULTI_CHUNK_CFG = ("PAG", "InstructPix2Pix")
"""Pipelines whose guidance batch is not two halves [uncond, cond] (perturbed-attention guidance, image guidance)."""


def check(target: PatchTarget, schedule: Schedule, method: SimilarityMethod) -> None:
    """Refuse a DiT, and CFG alignment where the guidance batch is not two halves."""
    if not schedule.prunes:
        return
    require_unet(target, method)
    name = type(target.pipe).__name__
    if method.align_cfg and any(kind in name for kind in MULTI_CHUNK_CFG):
        raise UnsupportedModelError(
            f"{name} batches guidance in more than two chunks, so CFG alignment would mix samples; use a method with align_cfg=false"
        )


def check_prune_limits(target: PatchTarget, schedule: Schedule, method: SimilarityMethod, latent_hw: tuple[int, int]) -> None:
    """Refuse, before any work, a ratio that would prune base tokens on this latent's grids."""
    ratio, patch = max(s.prune for s in schedule.steps), method.patch
    for slot in target.slots:
        grid = token_grid(latent_hw, slot.level)
        n = grid[0] * grid[1]
        limit = n - num_cells(grid, patch)
        if int(ratio * n) > limit:
            raise ScheduleError(
                f"prune ratio {ratio} removes {int(ratio * n)} of {n} tokens in {slot.name}, but with patch {patch} "
                f"at most {limit} can be pruned on a {grid[0]}x{grid[1]} grid"
            )


def install_sito(patcher: Patcher, target: PatchTarget, state: RunState, method: SitoConfig) -> None:
    def plan(x: Tensor, grid: tuple[int, int], num_prune: int) -> TokenPlan:
        return sito_plan(x, grid, num_prune, noise=method.noise, **_shared(method, state))

    _prune_attention(patcher, target.slots, state, plan)


def install_random(patcher: Patcher, target: PatchTarget, state: RunState, method: RandomConfig) -> None:
    def plan(x: Tensor, grid: tuple[int, int], num_prune: int) -> TokenPlan:
        return random_plan(x, grid, num_prune, **_shared(method, state))

    _prune_attention(patcher, target.slots, state, plan)


@dataclass
class DatoStream:
    """DaTo's DiffScore history in one stream: the hooked feature of the last two steps that computed it,
    and the DiffScore of each slot grid, computed once per call."""

    features: deque[Tensor] = field(default_factory=lambda: deque(maxlen=2))
    diffs: dict[tuple[int, int], Tensor | None] = field(default_factory=dict)

    def record(self, feature: Tensor) -> None:
        """A step computed the feature (after every slot of the call has pruned): it is the newest history."""
        self.features.append(feature.detach())
        self.diffs.clear()

    def diff(self, grid: tuple[int, int]) -> Tensor | None:
        """The DiffScore on ``grid``, or ``None`` before two computed steps exist."""
        if grid not in self.diffs:
            history = self.features
            self.diffs[grid] = diff_score(history[0], history[1], grid) if len(history) == 2 else None
        return self.diffs[grid]


def install_dato(patcher: Patcher, target: PatchTarget, state: RunState, method: DatoConfig) -> None:
    def plan(x: Tensor, grid: tuple[int, int], num_prune: int) -> TokenPlan:
        diff = _dato_stream(state).diff(grid)
        return dato_plan(
            x,
            grid,
            num_prune,
            diff,
            noise=method.noise,
            diff_weight=method.diff_weight,
            random_sign=method.random_sign,
            **_shared(method, state),
        )

    _prune_attention(patcher, target.slots, state, plan)
    unet = require_unet(target, method)
    feature: nn.Module = unet.up_blocks[-1] if method.diff_source == "up_block" else unet.conv_out
    patcher.add_forward_hook(feature, lambda _module, _args, output: _dato_stream(state).record(output))


SITO = Pruner(check, install_sito, check_prune_limits)
DATO = Pruner(check, install_dato, check_prune_limits)
RANDOM = Pruner(check, install_random, check_prune_limits)


def _dato_stream(state: RunState) -> DatoStream:
    """The current stream's DaTo history; the run state drops it at every new generation."""
    stream: DatoStream = state.cache().setdefault("dato", DatoStream())
    return stream


def _shared(method: SimilarityMethod, state: RunState) -> dict[str, Any]:
    """The plan arguments every similarity method takes, for the current call."""
    return {
        "patch": method.patch,
        "recover_from": method.recover_from,
        # diffusers batches CFG as [uncond, cond]: the conditional half is the second one
        "align_from": ({"cond": "second", "uncond": "first"}[method.align_source] if method.align_cfg and state.cfg else None),
        "generator": state.generator,
    }


def _prune_attention(patcher: Patcher, slots: list[Slot], state: RunState, plan: Plan) -> None:
    """Wrap each slot's ``attn1`` so that, at a non-zero prune ratio, only the tokens ``plan`` keeps are attended."""
    for slot in slots:
        patcher.replace_method(slot.block.attn1, "forward", partial(_pruned_attention, slot=slot, state=state, plan=plan))


def _pruned_attention(original: Callable[..., Tensor], slot: Slot, state: RunState, plan: Plan) -> Callable[..., Tensor]:
    def forward(hidden_states: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        ratio = state.ratio(slot.attention_block)
        if ratio == 0:
            state.record_held([slot.name], hidden_states.shape[1])
            return original(hidden_states, *args, **kwargs)
        if args or kwargs.get("encoder_hidden_states") is not None or kwargs.get("attention_mask") is not None:
            raise UnsupportedModelError(f"cannot prune {slot.name}: its self-attention is called with a mask or context")
        n = hidden_states.shape[1]
        grid = token_grid(state.latent_hw, slot.level)
        if grid[0] * grid[1] != n:
            raise UnsupportedModelError(f"cannot prune {slot.name}: {n} tokens do not form the expected {grid[0]}x{grid[1]} grid")
        with state.selecting():
            tokens = plan(hidden_states, grid, int(ratio * n))
        state.record_tokens(slot.name, tokens.num_kept, n)
        return tokens.recover(original(tokens.gather(hidden_states), *args, **kwargs))

    return forward
