"""Block caching on DiTs (the Δ-DiT / DBCache idea): a block-cache step computes the first F and the last B
transformer blocks, and the blocks between add the residual they produced at the last full step.

A full step keeps, per stream, the input of every block a later step starts caching at and the
output of every block it stops at (only those the schedule names: :class:`BlockPlan`). A
block-cache step runs the first blocks, passes the image (and text) tokens unchanged through the
cached blocks, and at the last of them adds ``output - input`` of that span at the last full step.
When CAT pruning computes only some image tokens, the residual is taken at those tokens, and a
pruned full step refreshes only theirs. A forecast step adds the residual extrapolated from the last
full steps (:mod:`~prunesched.runtime.forecast`), for which a full step keeps that many boundaries.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from torch import Tensor

from prunesched.runtime.cat_pruning import expand_index
from prunesched.runtime.dit_layout import BlockPlan
from prunesched.runtime.forecast import Points, recall, remember
from prunesched.runtime.patcher import Patcher
from prunesched.runtime.state import RunState

Streams = tuple[Tensor, Tensor | None]
"""A block's ``(image tokens, text tokens)``; the text is None where the block does not carry it (PixArt)."""


def install_block_caching(patcher: Patcher, plan: BlockPlan, state: RunState) -> None:
    """Wrap every transformer block so that block-cache steps skip the cached ones (nothing to do without such steps)."""
    if not plan.starts:
        return
    for index, (_name, block) in enumerate(plan.blocks):
        patcher.replace_method(block, "forward", partial(_cached_block, index=index, plan=plan, state=state))


def _cached_block(original: Callable[..., Any], index: int, plan: BlockPlan, state: RunState) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        store = state.cache()
        if state.branch is None:  # a full step: keep the boundaries later steps need
            if index in plan.starts:
                store[f"block_in.{index}"] = _refresh(store.get(f"block_in.{index}"), block_inputs(plan.joint, args, kwargs), state)
            output = original(*args, **kwargs)
            if index in plan.ends:
                store[f"block_out.{index}"] = _refresh(store.get(f"block_out.{index}"), block_outputs(plan.joint, output), state)
            return output
        start, end = plan.span(state.branch)
        if not start <= index <= end:
            return original(*args, **kwargs)
        before, after = store.get(f"block_in.{start}"), store.get(f"block_out.{end}")
        if before is None or after is None:  # a call that skipped a boundary block at full steps (SD3's skip-layer guidance)
            state.record_missing()
            return original(*args, **kwargs)
        inputs = block_inputs(plan.joint, args, kwargs)
        if index < end:
            return _as_output(plan, inputs)
        before, after = recall(before, state.position, state.forecast), recall(after, state.position, state.forecast)
        image = inputs[0] + _at_tokens(after[0] - before[0], state)
        if after[1] is None or inputs[1] is None:  # no text stream (PixArt), or SD3's last block, which returns none
            return _as_output(plan, (image, None))
        return _as_output(plan, (image, inputs[1] + (after[1] - before[1])))

    return forward


def block_inputs(joint: bool, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Streams:
    """The streams a transformer block was called with; ``joint``: it carries the text too (:attr:`BlockPlan.joint`)."""
    image = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
    if not joint:
        return image, None
    return image, kwargs["encoder_hidden_states"] if "encoder_hidden_states" in kwargs else args[1]


def block_outputs(joint: bool, output: Any) -> Streams:
    """The streams a transformer block returned: a joint block returns ``(text, image)``; SD3's last block returns no text (None)."""
    return (output[1], output[0]) if joint else (output, None)


def _as_output(plan: BlockPlan, streams: Streams) -> Any:
    return (streams[1], streams[0]) if plan.joint else streams[0]


def _at_tokens(image: Tensor, state: RunState) -> Tensor:
    """A full-token tensor at the image tokens the current call computes (all of them unless CAT prunes)."""
    index = state.token_index
    return image if index is None else image.gather(1, expand_index(index, image.shape[-1]))


def _refresh(points: Points | None, current: Streams, state: RunState) -> Points:
    """``points`` with what a full step keeps added: ``current``, or on a CAT-pruned step the last kept tensors with the
    recomputed tokens replaced."""
    index = state.token_index
    if index is not None:
        assert points is not None  # CAT computes its first two steps of a stream in full, and they precede any pruned one
        image = points[-1][1][0].scatter(1, expand_index(index, current[0].shape[-1]), current[0])
        current = image, current[1]
    return remember(points, state.position, current, state.keep)
