"""What a DiT (SD3, PixArt-Σ, Flux) looks like to the runtime: its transformer blocks in the order they run,
and which of them each block-cache step of a schedule computes.

Like :mod:`~prunesched.runtime.unet_layout`, everything here is derived from the module structure
alone, so a schedule that asks for more blocks than the transformer has fails at ``apply`` time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from diffusers import FluxTransformer2DModel, PixArtTransformer2DModel, SD3Transformer2DModel
from torch import nn

from prunesched.errors import ScheduleError
from prunesched.runtime.schedule import BlockCache, Schedule

DiT: TypeAlias = SD3Transformer2DModel | PixArtTransformer2DModel | FluxTransformer2DModel
DIT_TYPES = (SD3Transformer2DModel, PixArtTransformer2DModel, FluxTransformer2DModel)

BLOCK_LISTS = ("transformer_blocks", "single_transformer_blocks")
"""The block lists a DiT runs, in order: every DiT's ``transformer_blocks``, then Flux's single-stream blocks."""


@dataclass(frozen=True)
class BlockPlan:
    """The transformer blocks of a DiT and the boundaries a schedule's block-cache steps need cached.

    Attributes:
        blocks: ``(module path, block)`` in the order the forward runs them.
        joint: whether a block carries the text tokens as a second stream (SD3's and Flux's blocks take
            and return ``(encoder_hidden_states, hidden_states)``; PixArt's take text only as
            cross-attention input and return the image tokens).
        starts: indices of the first cached block of some step: a full step keeps its input.
        ends: indices of the last cached block of some step: a full step keeps its output.
    """

    blocks: list[tuple[str, nn.Module]]
    joint: bool
    starts: frozenset[int]
    ends: frozenset[int]

    def span(self, cache: int | BlockCache) -> tuple[int, int]:
        """The cached blocks ``[start, end]`` of a step: all but the first ``first`` and the last ``last``."""
        spec = BlockCache.of(cache)
        return spec.first, len(self.blocks) - spec.last - 1


def dit_blocks(transformer: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every transformer block in the order the forward runs them: Flux's double-stream blocks, then its single-stream ones."""
    return [(f"{name}.{i}", block) for name in BLOCK_LISTS for i, block in enumerate(getattr(transformer, name, ()))]


def max_depth(transformer: nn.Module) -> int:
    """The deepest integer cache depth ``b`` this DiT accepts: ``2 * (b + 1)`` computed blocks leave at least one cached."""
    return (len(dit_blocks(transformer)) - 1) // 2 - 1


def block_plan(transformer: DiT, schedule: Schedule) -> BlockPlan:
    """The blocks of ``transformer`` and what ``schedule``'s block-cache steps need; refuses a step that caches no block."""
    blocks = dit_blocks(transformer)
    count = len(blocks)
    starts, ends = set(), set()
    for i, step in enumerate(schedule.steps):
        if not isinstance(step.cache, (int, BlockCache)):
            continue
        spec = BlockCache.of(step.cache)
        if spec.computed >= count:
            deepest = max_depth(transformer)
            depths = f"integer depths 0 to {deepest}" if deepest >= 0 else "no integer depth"
            raise ScheduleError(
                f"step {i}: cache {step.cache!r} computes the first {spec.first} and last {spec.last} of this transformer's "
                f"{count} blocks and caches none; valid: first + last <= {count - 1}, {depths}"
            )
        starts.add(spec.first)
        ends.add(count - spec.last - 1)
    return BlockPlan(blocks, is_joint(transformer), frozenset(starts), frozenset(ends))


def is_joint(transformer: nn.Module) -> bool:
    """Whether the transformer's blocks carry the text tokens as a second stream (SD3, Flux; not PixArt)."""
    return not isinstance(transformer, PixArtTransformer2DModel)
