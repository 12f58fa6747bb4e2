"""AT-EDM in a UNet: rank tokens in the first layer of an attention block, carry the kept ones through it, copy back.

The first transformer layer of each pruned attention block computes its self-attention with an
explicit map (only there, and only at a non-zero ratio) and ranks tokens by G-WPR on it (or on its
cross-attention map, ``source="cross"``). Where the block has several layers (SDXL: 2 or 10), the
mask is applied after the first layer's feed-forward, the following layers run on the kept tokens
only, and after the last layer every pruned token takes the value of the kept token it received
most attention from, so the block's output projection and the next ResNet see a full grid (the
paper's placement, §3.1). A block of one layer (SD 1.x/2.x) has nothing after its feed-forward to
save, so there the layer's cross-attention and feed-forward run on the kept tokens and each pruned
token takes their outputs from its copy source, keeping its own self-attention result in the
residual stream: the single-layer equivalent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from diffusers.models.attention_processor import Attention
from torch import Tensor

from prunesched.errors import ScheduleError, UnsupportedModelError
from prunesched.runtime.methods import AtedmConfig
from prunesched.runtime.patcher import Patcher
from prunesched.runtime.pruner import PatchTarget, Pruner, require_unet
from prunesched.runtime.schedule import Schedule
from prunesched.runtime.state import RunState
from prunesched.runtime.tokens import TokenPlan, atedm_plan, attention_map, combine_heads, gwpr, scored_self_attention
from prunesched.runtime.unet_layout import Slot


@dataclass
class AttentionBlock:
    """One pruned attention block (a ``Transformer2DModel``) and what its first layer found in the current call."""

    name: str
    layers: list[Slot]
    active: bool = False
    score: Tensor | None = None
    received: Tensor | None = None
    plan: TokenPlan | None = field(default=None, repr=False)


def attention_blocks(slots: list[Slot]) -> list[AttentionBlock]:
    """Group slots into their attention blocks; AT-EDM prunes whole blocks, so a block's slots must be all its layers."""
    blocks: dict[str, list[Slot]] = {}
    for slot in slots:
        blocks.setdefault(slot.attention_block, []).append(slot)
    for name, layers in blocks.items():
        expected = [f"{name}.transformer_blocks.{i}" for i in range(len(layers))]
        if [s.name for s in layers] != expected:
            raise ScheduleError(
                f"atedm prunes whole attention blocks; slots of {name} must be its transformer_blocks 0 to n in order, "
                f"got {[s.name for s in layers]}"
            )
    return [AttentionBlock(name, layers) for name, layers in blocks.items()]


def check(target: PatchTarget, schedule: Schedule, method: AtedmConfig) -> None:
    """Refuse a DiT, slots that are not whole attention blocks, and layers the explicit attention would not reproduce."""
    if not schedule.prunes:
        return
    require_unet(target, method)
    for block in attention_blocks(target.slots):
        for layer in block.layers:
            _check_layer(layer)


def install(patcher: Patcher, target: PatchTarget, state: RunState, method: AtedmConfig) -> None:
    """Patch every attention block of the slots for AT-EDM pruning at the schedule's per-step ratios."""
    for block in attention_blocks(target.slots):
        first, last = block.layers[0].block, block.layers[-1].block
        patcher.replace_method(
            first.attn1, "forward", partial(_scoring_self_attention, attn=first.attn1, block=block, state=state, method=method)
        )
        if method.source == "cross":
            patcher.replace_method(
                first.attn2, "forward", partial(_scoring_cross, attn=first.attn2, block=block, state=state, method=method)
            )
        if len(block.layers) > 1:
            patcher.replace_method(first, "forward", partial(_after, block=block, keep=True))
            patcher.replace_method(last, "forward", partial(_after, block=block, keep=False))
        else:
            if method.source == "self":
                patcher.replace_method(first.attn2, "forward", partial(_on_kept, block=block))
            patcher.replace_method(first.ff, "forward", partial(_on_kept, block=block))


ATEDM = Pruner(check, install)


def _check_layer(slot: Slot) -> None:
    """Refuse layers whose attention the explicit computation below would not reproduce exactly."""
    layer = slot.block
    if getattr(layer, "_chunk_size", None) is not None:
        raise UnsupportedModelError(f"cannot prune {slot.name} with atedm: its feed-forward is chunked (set_chunk_feed_forward)")
    for attn in (layer.attn1, layer.attn2):
        if attn is None:
            raise UnsupportedModelError(f"cannot prune {slot.name} with atedm: it has no cross-attention")
        odd = [k for k in ("norm_q", "norm_k", "group_norm", "spatial_norm") if getattr(attn, k, None) is not None]
        if odd or getattr(attn, "residual_connection", False) or getattr(attn, "rescale_output_factor", 1.0) != 1.0:
            raise UnsupportedModelError(f"cannot prune {slot.name} with atedm: its attention uses {odd or 'a residual or rescaled output'}")


def _heads(attn: Attention, x: Tensor) -> Tensor:
    """``(B, N, H * d) -> (B, H, N, d)``."""
    b, n, _ = x.shape
    return x.view(b, n, attn.heads, -1).transpose(1, 2)


def _scoring_self_attention(
    original: Callable[..., Tensor], attn: Attention, block: AttentionBlock, state: RunState, method: AtedmConfig
) -> Callable[..., Tensor]:
    """Self-attention with an explicit map: the output, the map summed over heads, and (source "self") the G-WPR scores."""

    def forward(hidden_states: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        ratio = state.ratio(block.name)
        block.active, block.plan = ratio > 0, None
        if not block.active:
            state.record_held([layer.name for layer in block.layers], hidden_states.shape[1])
            return original(hidden_states, *args, **kwargs)
        if args or kwargs.get("encoder_hidden_states") is not None or kwargs.get("attention_mask") is not None:
            raise UnsupportedModelError(f"cannot prune {block.name}: its self-attention is called with a mask or context")
        q, k, v = (_heads(attn, proj(hidden_states)) for proj in (attn.to_q, attn.to_k, attn.to_v))
        scored = scored_self_attention(
            q, k, v, attn.scale, iterations=method.iterations or None, chunk=method.chunk, epsilon=method.epsilon
        )
        block.received, block.score = scored.received, scored.score if method.source == "self" else None
        _plan(block, state, hidden_states.shape[1])
        return attn.to_out[1](attn.to_out[0](scored.output.to(hidden_states.dtype)))

    return forward


def _scoring_cross(
    original: Callable[..., Tensor], attn: Attention, block: AttentionBlock, state: RunState, method: AtedmConfig
) -> Callable[..., Tensor]:
    """Cross-attention with explicit maps, whose entropy-weighted G-WPR (Eq. 1) scores the tokens (source "cross")."""

    def forward(
        hidden_states: Tensor, encoder_hidden_states: Tensor | None = None, attention_mask: Tensor | None = None, **kwargs: Any
    ) -> Tensor:
        if not block.active:
            return original(hidden_states, encoder_hidden_states=encoder_hidden_states, attention_mask=attention_mask, **kwargs)
        if attention_mask is not None or encoder_hidden_states is None:
            raise UnsupportedModelError(f"cannot score {block.name} by cross-attention: it is called with a mask or without text")
        q = _heads(attn, attn.to_q(hidden_states))
        k, v = _heads(attn, attn.to_k(encoder_hidden_states)), _heads(attn, attn.to_v(encoder_hidden_states))
        outputs, scores = [], []
        for head in range(attn.heads):  # the map is N x (text tokens): small, but kept one head at a time like the self map
            attn_map = attention_map(q[:, head], k[:, head], attn.scale, method.chunk)
            outputs.append(attn_map.to(v.dtype) @ v[:, head])
            scores.append(gwpr(attn_map, "cross", method.iterations or None, method.epsilon))
        block.score = combine_heads(torch.stack(scores, dim=1))
        _plan(block, state, hidden_states.shape[1])
        output = torch.stack(outputs, dim=2).flatten(2)  # (B, N, H * d), heads concatenated as diffusers does
        return attn.to_out[1](attn.to_out[0](output.to(hidden_states.dtype)))

    return forward


def _plan(block: AttentionBlock, state: RunState, n: int) -> None:
    """Once the block's scores and map exist, choose the kept tokens and record what each layer computes on."""
    if block.score is None or block.received is None:
        return
    with state.selecting():
        block.plan = atedm_plan(block.score, block.received, int(state.ratio(block.name) * n))
    kept = block.plan.num_kept
    for i, layer in enumerate(block.layers):
        state.record_tokens(layer.name, n if i == 0 and len(block.layers) > 1 else kept, n)


def _after(original: Callable[..., Tensor], block: AttentionBlock, keep: bool) -> Callable[..., Tensor]:
    """A layer's forward, then (when the block prunes) only its kept tokens (``keep``) or the recovered full sequence."""

    def forward(*args: Any, **kwargs: Any) -> Tensor:
        out = original(*args, **kwargs)
        if block.plan is None:  # the block does not prune in this call
            return out
        return block.plan.gather(out) if keep else block.plan.recover(out)

    return forward


def _on_kept(original: Callable[..., Tensor], block: AttentionBlock) -> Callable[..., Tensor]:
    """A sublayer (cross-attention or feed-forward) run on the kept tokens, each pruned token taking its copy source's output."""

    def forward(hidden_states: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if block.plan is None:  # the block does not prune in this call
            return original(hidden_states, *args, **kwargs)
        return block.plan.recover(original(block.plan.gather(hidden_states), *args, **kwargs))

    return forward
