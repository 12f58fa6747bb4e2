"""Token pruning in the self-attention of the chosen slots: prune, attend, recover."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from prunesched.errors import ScheduleError, UnsupportedModelError
from prunesched.runtime.methods import DatoConfig, RandomConfig, SimilarityMethod, SitoConfig, TokenMethod
from prunesched.runtime.patcher import Patcher
from prunesched.runtime.schedule import Schedule
from prunesched.runtime.state import RunState
from prunesched.runtime.tokens import TokenPlan, dato_plan, num_cells, random_plan, sito_plan
from prunesched.runtime.unet_layout import Slot, token_grid


def install_pruning(patcher: Patcher, slots: list[Slot], state: RunState) -> None:
    """Wrap each slot's ``attn1`` so that, at a non-zero prune ratio, only the kept tokens are attended."""
    for slot in slots:
        patcher.replace_method(slot.block.attn1, "forward", lambda original, slot=slot: _pruned_attention(original, slot, state))


def plan_tokens(method: TokenMethod, x: Tensor, grid: tuple[int, int], num_prune: int, state: RunState) -> TokenPlan:
    """Dispatch to the token method named by the schedule."""
    common: dict[str, Any] = {
        "patch": method.patch,
        "recover_from": method.recover_from,
        # diffusers batches CFG as [uncond, cond]: the conditional half is the second one
        "align_from": ({"cond": "second", "uncond": "first"}[method.align_source] if method.align_cfg and state.cfg else None),
        "generator": state.generator,
    }
    if isinstance(method, SitoConfig):
        return sito_plan(x, grid, num_prune, noise=method.noise, **common)
    if isinstance(method, DatoConfig):
        return dato_plan(
            x,
            grid,
            num_prune,
            state.diff(grid),
            noise=method.noise,
            diff_weight=method.diff_weight,
            random_sign=method.random_sign,
            **common,
        )
    if isinstance(method, RandomConfig):
        return random_plan(x, grid, num_prune, **common)
    raise ScheduleError(f"method {method.name!r} cannot prune UNet self-attention; valid: sito, dato, random")


def check_prune_limits(slots: list[Slot], schedule: Schedule, latent_hw: tuple[int, int]) -> None:
    """Refuse, before any work, a ratio that would prune base tokens on this latent's grids."""
    if not isinstance(schedule.method, SimilarityMethod):
        return  # only base tokens set a limit below the schedule's own range
    ratio, patch = max(s.prune for s in schedule.steps), schedule.method.patch
    for slot in slots:
        grid = token_grid(latent_hw, slot.level)
        n = grid[0] * grid[1]
        limit = n - num_cells(grid, patch)
        if int(ratio * n) > limit:
            raise ScheduleError(
                f"prune ratio {ratio} removes {int(ratio * n)} of {n} tokens in {slot.name}, but with patch {patch} "
                f"at most {limit} can be pruned on a {grid[0]}x{grid[1]} grid"
            )


def _pruned_attention(original: Callable[..., Tensor], slot: Slot, state: RunState) -> Callable[..., Tensor]:
    method = state.schedule.method

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
        plan = plan_tokens(method, hidden_states, grid, int(ratio * n), state)
        state.record_tokens(slot.name, plan.num_kept, n)
        return plan.recover(original(plan.gather(hidden_states), *args, **kwargs))

    return forward
