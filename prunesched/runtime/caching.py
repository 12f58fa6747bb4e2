"""DeepCache-style partial UNet steps: skipped modules return the output they computed last time, or at a forecast
step its extrapolation from their last computed outputs."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from prunesched.runtime.forecast import recall, remember
from prunesched.runtime.patcher import Patcher
from prunesched.runtime.state import RunState
from prunesched.runtime.unet_layout import CacheUnit


def install_caching(patcher: Patcher, units: list[CacheUnit], state: RunState) -> None:
    """Make every unit return its cached output at the branches that freeze it, and refresh the cache otherwise."""
    for unit in units:
        patcher.replace_method(unit.module, "forward", partial(_cached_forward, unit=unit, state=state))


def _cached_forward(original: Callable[..., Any], unit: CacheUnit, state: RunState) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        cache = state.cache()
        if state.branch in unit.frozen_in:
            return recall(cache[unit.key], state.position, state.forecast if unit.forecasts else 0)
        output = original(*args, **kwargs)
        cache[unit.key] = remember(cache.get(unit.key), state.position, output, state.keep if unit.forecasts else 1)
        return output

    return forward
