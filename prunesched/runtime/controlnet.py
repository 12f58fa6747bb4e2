"""A ControlNet under a schedule: not run at ``reuse`` steps, and run only as far as a cache step reads it.

In diffusers' ControlNet pipelines the ControlNet runs just before the UNet in every iteration
and returns one residual per skip connection of the UNet's down path (``conv_in``'s output first)
and one for the mid block's output. The UNet adds residual k to skip k, which only the up-block
resnet that takes skip k reads, and the mid residual to the mid block's output, which only the
first resnet of the first up block reads. So:

- a ``reuse`` step does not run the UNet and reads no residual: the ControlNet is not run, and
  returns the residuals of its last full call, which nothing reads;
- a cache step at branch b recomputes the UNet's up-block resnets that take skips 0 to b (and the
  first one, which takes the mid output, only at the deepest branch): the ControlNet computes
  exactly the residuals those read. Its down modules are skipped where the UNet's own are (a
  module the branch skips in the UNet feeds only skips the branch does not read), and so are its
  mid block and the zero convolutions of the unread residuals; like the UNet's, they return their
  output of the last full step, so the unread residuals the pipeline passes on are stale, and the
  read ones are computed as in a full step, bit for bit;
- a full step runs it in full and refreshes what cache steps use;
- a forecast step extrapolates the UNet's cached features; the ControlNet's skipped modules feed only
  residuals the UNet does not read, so they return their last output as at order 0, and keep only that.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from diffusers import ControlNetModel, MultiControlNetModel, UNet2DConditionModel
from torch import nn

from prunesched.errors import UnsupportedModelError
from prunesched.runtime.compiling import around, uncompiled
from prunesched.runtime.schedule import Cache
from prunesched.runtime.state import RunState
from prunesched.runtime.unet_layout import CacheUnit

_OUTPUT = "controlnet"
"""Where a stream's store keeps the ControlNet's output of its last full call."""


def find_controlnet(pipe: Any) -> nn.Module | None:
    """``pipe.controlnet`` (the module ``torch.compile`` wrapped, if compiled), None if there is none; other kinds are refused."""
    controlnet = uncompiled(getattr(pipe, "controlnet", None))
    if controlnet is None:
        return None
    kinds = {type(net).__name__ for net in _nets(controlnet).values()} - {ControlNetModel.__name__}
    if kinds:
        raise UnsupportedModelError(
            "prunesched.apply supports a ControlNetModel or a MultiControlNetModel of them at pipe.controlnet; "
            f"got {', '.join(sorted(kinds))}"
        )
    return controlnet


def controlnet_units(controlnet: nn.Module, unet: UNet2DConditionModel, unet_units: list[CacheUnit]) -> list[CacheUnit]:
    """The ControlNet modules a cache step skips, with the branches that skip each (see the module's docstring).

    ``unet_units`` are the UNet's, from :func:`~prunesched.runtime.unet_layout.cache_units`; with
    none (a schedule without cache steps) there is nothing to skip.
    """
    if not unet_units:
        return []
    readers = [f"up_blocks.{u}.resnets.{r}" for u, block in enumerate(unet.up_blocks) for r in range(len(block.resnets))][::-1]

    def unread(reader: str) -> frozenset[int]:
        """The branches at which the UNet skips ``reader``, so that what it alone reads is not needed."""
        return frozenset(b for unit in unet_units if reader == unit.key or reader.startswith(unit.key + ".") for b in unit.frozen_in)

    skipped = {u.key: u.frozen_in for u in unet_units if u.key.startswith("down_blocks.")}  # where the UNet skips its own
    mid = unread("up_blocks.0.resnets.0")  # the only reader of the mid block's output
    skipped |= {"mid_block": mid, "controlnet_mid_block": mid}
    skipped |= {f"controlnet_down_blocks.{k}": unread(reader) for k, reader in enumerate(readers)}
    units = []
    for name, net in _nets(controlnet).items():
        _check_mirrors(name, net, unet, len(readers))
        units += [CacheUnit(f"{name}.{key}", net.get_submodule(key), branches, False) for key, branches in skipped.items() if branches]
    return units


def _nets(controlnet: nn.Module) -> dict[str, Any]:
    """The ControlNets of ``controlnet`` by their path from the pipeline: itself, or each of a MultiControlNetModel's."""
    if isinstance(controlnet, MultiControlNetModel):
        return {f"controlnet.nets.{i}": uncompiled(net) for i, net in enumerate(controlnet.nets)}
    return {"controlnet": controlnet}


def _check_mirrors(name: str, net: Any, unet: UNet2DConditionModel, skips: int) -> None:
    """Refuse a ControlNet whose down path is not the UNet's: its residuals would not match the UNet's skips one to one."""

    def layout(model: Any) -> list[tuple[int, bool]]:
        return [(len(block.resnets), block.downsamplers is not None) for block in model.down_blocks]

    if layout(net) != layout(unet) or len(net.controlnet_down_blocks) != skips:
        raise UnsupportedModelError(
            f"{name}'s down path (layers, downsampler) {layout(net)} with {len(net.controlnet_down_blocks)} residuals "
            f"does not mirror the UNet's {layout(unet)} with {skips} skips, so cache steps cannot tell which residuals they read"
        )


def gate_controlnet(original: Callable[..., Any], state: RunState, step_of: Callable[[Any, Any], tuple[int, Cache]]) -> Callable[..., Any]:
    """``original`` (the ControlNet's forward) run as the UNet call it feeds will run.

    ``step_of(sample, timestep)`` gives that call's stream and what it performs (``"full"``, a
    branch id or ``"reuse"``). Until the ControlNet has run in full in this generation and stream,
    it runs in full whatever the step, so that a branch never reads a cache that does not exist.
    """
    signature = inspect.signature(original)

    def before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[dict[str, Any] | None, Any]:
        """Set the stream and branch the cache wrappers read; the last full output at a reuse step, or None to run."""
        inputs = signature.bind_partial(*args, **kwargs).arguments
        state.stream, performed = step_of(inputs["sample"], inputs["timestep"])
        store = state.cache()
        last = store.get(_OUTPUT)
        if performed == "reuse" and last is not None:
            return None, last
        state.branch = performed if isinstance(performed, int) and last is not None else None
        return (store if state.branch is None else None), None

    def after(output: Any, store: dict[str, Any] | None) -> None:
        """Keep a full call's output for the reuse steps."""
        if store is not None:
            store[_OUTPUT] = output

    return around(original, before, after)
