"""What a ``UNet2DConditionModel`` looks like to the runtime: its pruning slots and its cacheable units.

Everything here is derived from the module structure alone, before any image is generated, so
bad schedules fail at ``apply`` time rather than half-way through a generation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from torch import nn

from prunesched.errors import ScheduleError, UnsupportedModelError
from prunesched.runtime.schedule import Schedule

SUPPORTED_NORMS = ("layer_norm",)


@dataclass(frozen=True)
class Slot:
    """A transformer block whose self-attention can be pruned.

    Attributes:
        name: module path inside the UNet, e.g. ``down_blocks.0.attentions.1.transformer_blocks.0``.
        block: the ``BasicTransformerBlock``.
        level: how many times the latent was downsampled before this block (0 = latent resolution).
    """

    name: str
    block: BasicTransformerBlock
    level: int

    @property
    def attention_block(self) -> str:
        """The attention block (``Transformer2DModel``) the slot belongs to, e.g. ``down_blocks.0.attentions.1``."""
        return self.name.rsplit(".transformer_blocks.", 1)[0]


@dataclass(frozen=True)
class CacheUnit:
    """A module that DeepCache-style partial steps may skip, and the branches that skip it.

    Attributes:
        key: module path inside the UNet (inside the pipeline for a ControlNet's, ``controlnet.down_blocks.1``), used as the cache key.
        module: the module whose output is cached.
        frozen_in: branch ids at which the module is not recomputed and returns its cached output.
        forecasts: whether a forecast step extrapolates the cached output; a ControlNet's frozen modules feed only
            residuals the UNet does not read at that step, so they are copied, and keep one output.
    """

    key: str
    module: nn.Module
    frozen_in: frozenset[int]
    forecasts: bool = True


def token_grid(latent_hw: tuple[int, int], level: int) -> tuple[int, int]:
    """The ``h x w`` token grid of a block ``level`` stride-2 downsamplings below the latent."""
    h, w = latent_hw
    for _ in range(level):
        h, w = -(-h // 2), -(-w // 2)
    return h, w


def _levels(unet: UNet2DConditionModel) -> Iterator[tuple[str, nn.Module, int]]:
    """Every down, mid and up block with its resolution level."""
    level = 0
    for i, block in enumerate(unet.down_blocks):
        yield f"down_blocks.{i}", block, level
        level += getattr(block, "downsamplers", None) is not None
    if getattr(unet, "mid_block", None) is not None:
        yield "mid_block", unet.mid_block, level
    for i, block in enumerate(unet.up_blocks):
        yield f"up_blocks.{i}", block, level
        level -= getattr(block, "upsamplers", None) is not None


def unet_blocks(unet: UNet2DConditionModel) -> list[str]:
    """The down, mid and up blocks of the UNet, in the order the forward runs them."""
    return [name for name, _, _ in _levels(unet)]


def all_slots(unet: UNet2DConditionModel) -> list[Slot]:
    """Every transformer block of the UNet, with its resolution level."""
    slots = []
    for prefix, block, level in _levels(unet):
        for a, attention in enumerate(getattr(block, "attentions", None) or ()):
            for t, inner in enumerate(getattr(attention, "transformer_blocks", None) or ()):
                slots.append(Slot(f"{prefix}.attentions.{a}.transformer_blocks.{t}", inner, level))
    return slots


def select_slots(unet: UNet2DConditionModel, schedule: Schedule) -> list[Slot]:
    """The slots a schedule prunes, checked to be patchable; never empty."""
    slots = all_slots(unet)
    if not slots:
        raise UnsupportedModelError("this UNet has no transformer blocks, so there is no self-attention to prune")
    if schedule.slots == "highest-resolution":
        top = min(s.level for s in slots)
        chosen = [s for s in slots if s.level == top]
    elif schedule.slots == "all":
        chosen = slots
    else:
        by_name = {s.name: s for s in slots}
        missing = [n for n in schedule.slots if n not in by_name]
        if missing:
            raise ScheduleError(f"slot {missing[0]!r} is not a transformer block of this UNet; valid slots: {', '.join(by_name)}")
        chosen = [by_name[n] for n in schedule.slots]
    for slot in chosen:
        check_supported(slot)
    return chosen


def prune_less_blocks(unet: UNet2DConditionModel, schedule: Schedule) -> frozenset[str]:
    """The attention blocks the schedule's DSAP prune-less set names, checked against this UNet."""
    if schedule.prune_less is None:
        return frozenset()
    blocks = {s.attention_block for s in all_slots(unet)}
    if schedule.prune_less.blocks == "dsap":  # the first of each down stage, the last of each up stage
        chosen = {f"down_blocks.{i}.attentions.0" for i, b in enumerate(unet.down_blocks) if getattr(b, "attentions", None)}
        chosen |= {
            f"up_blocks.{i}.attentions.{len(b.attentions) - 1}" for i, b in enumerate(unet.up_blocks) if getattr(b, "attentions", None)
        }
        return frozenset(chosen)
    missing = [b for b in schedule.prune_less.blocks if b not in blocks]
    if missing:
        raise ScheduleError(f"prune_less block {missing[0]!r} is not an attention block of this UNet; valid: {', '.join(sorted(blocks))}")
    return frozenset(schedule.prune_less.blocks)


def check_supported(slot: Slot) -> None:
    """Refuse blocks whose self-attention input is not a plain ``(B, N, C)`` token set we can prune correctly."""
    block = slot.block
    kind = type(block).__name__
    problem = None
    if kind != "BasicTransformerBlock":
        problem = f"is a {kind}, not a BasicTransformerBlock"
    elif getattr(block, "norm_type", None) not in SUPPORTED_NORMS:
        problem = f"uses norm_type={block.norm_type!r} (e.g. PixArt's ada_norm_single); supported: {', '.join(SUPPORTED_NORMS)}"
    elif hasattr(block, "fuser"):
        problem = "has GLIGEN gated self-attention"
    elif getattr(block, "pos_embed", None) is not None:
        problem = "adds positional embeddings before self-attention"
    elif getattr(block, "only_cross_attention", False):
        problem = "uses only cross-attention, so attn1 is not self-attention"
    if problem:
        raise UnsupportedModelError(f"cannot prune {slot.name}: it {problem}")


def max_branch(unet: UNet2DConditionModel) -> int:
    """The deepest DeepCache branch id of this UNet (branch b recomputes block b // L, layer b % L)."""
    return len(unet.down_blocks) * _layers_per_up_block(unet) - 1


def branch_inputs(unet: UNet2DConditionModel) -> list[str]:
    """For every DeepCache branch ``b`` (the list's index), the module whose cached output a partial step at ``b`` reads:
    the last layer it does not recompute before the first up layer it does (see :func:`cache_units`), or the up
    block (the mid block) before that up block when the step recomputes all of it."""
    per_block, n = _layers_per_up_block(unet), len(unet.down_blocks)
    names = []
    for b in range(max_branch(unet) + 1):
        block_id, layer_id = divmod(b, per_block)
        up = n - 1 - block_id
        first = len(unet.up_blocks[up].resnets) - 1 - layer_id  # the first up layer the step recomputes
        if first == 0:
            names.append(f"up_blocks.{up - 1}" if up else "mid_block")
        else:
            attentions = getattr(unet.up_blocks[up], "attentions", None)
            kind = "attentions" if attentions is not None and first - 1 < len(attentions) else "resnets"
            names.append(f"up_blocks.{up}.{kind}.{first - 1}")
    return names


def _layers_per_up_block(unet: UNet2DConditionModel) -> int:
    return len(unet.up_blocks[-1].resnets)


def cache_units(unet: UNet2DConditionModel, branches: set[int]) -> list[CacheUnit]:
    """The modules that a partial step at any of ``branches`` skips, following DeepCache's branch semantics.

    With L layers per up block, branch b keeps block ``b // L`` of the down path up to layer
    ``b % L`` (exclusive) and the mirrored up block from its last ``b % L + 1`` layers on; every
    deeper block and the mid block return their cached outputs. Branch 0 recomputes only
    ``conv_in``, the last layer of the last up block and ``conv_out``.
    """
    limit = max_branch(unet)
    bad = sorted(b for b in branches if b > limit)
    if bad:
        raise ScheduleError(f"cache branch {bad[0]} is not valid for this UNet; valid branch ids: 0 to {limit}")
    per_block = _layers_per_up_block(unet)
    n = len(unet.down_blocks)
    frozen: dict[str, set[int]] = {}
    modules: dict[str, nn.Module] = {}

    def mark(key: str, module: nn.Module | None, b: int) -> None:
        if module is not None:
            modules[key] = module
            frozen.setdefault(key, set()).add(b)

    for b in sorted(branches):
        block_id, layer_id = divmod(b, per_block)
        for i, block in enumerate(unet.down_blocks):
            key = f"down_blocks.{i}"
            if i > block_id or (i == block_id and layer_id == 0):
                mark(key, block, b)
            elif i == block_id:
                for j in range(layer_id, len(block.resnets)):
                    _mark_layer(mark, key, block, j, b)
                for s, sampler in enumerate(block.downsamplers or ()):
                    mark(f"{key}.downsamplers.{s}", sampler, b)
        mark("mid_block", getattr(unet, "mid_block", None), b)
        for u, block in enumerate(unet.up_blocks):
            key, mirrored = f"up_blocks.{u}", n - 1 - u
            if mirrored > block_id:
                mark(key, block, b)
            elif mirrored == block_id:
                layers = len(block.resnets)
                for j in range(layers):
                    if layers - j - 1 > layer_id:
                        _mark_layer(mark, key, block, j, b)
    return [CacheUnit(key, modules[key], frozenset(bs)) for key, bs in frozen.items()]


def _mark_layer(mark: Callable[[str, nn.Module | None, int], None], key: str, block: nn.Module, j: int, b: int) -> None:
    mark(f"{key}.resnets.{j}", block.get_submodule(f"resnets.{j}"), b)
    attentions = getattr(block, "attentions", None)
    if attentions is not None and j < len(attentions):
        mark(f"{key}.attentions.{j}", attentions[j], b)
