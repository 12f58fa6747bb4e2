"""Schedules in other tools' formats: the files ``prunesched export --format`` and ``prunesched schedule convert`` write.

``cache-dit`` (github.com/vipshop/cache-dit) runs DBCache on DiTs: a cached step computes the first
``Fn_compute_blocks`` and the last ``Bn_compute_blocks`` transformer blocks and adds the residual the
blocks between produced at the last computed step, which is what a :class:`BlockCache` step does here.
Its ``steps_computation_mask`` says for every step whether to compute it in full (1) or from the cache
(0); with ``steps_computation_policy: static`` a 0 step always uses the cache (``dynamic`` would still
compare a residual with a threshold and might compute it). So a schedule without pruning whose cached
steps all compute the same blocks is a cache-dit config. cache-dit has no token pruning, no step that
skips the whole transformer (``reuse``: every cached step runs its first blocks), no span without a
first block (``Fn_compute_blocks >= 1``), one span per run, and no forecast steps (its TaylorSeer calibrator
is its own extrapolation over its own refresh steps, not a schedule's per-step order).
"""

from __future__ import annotations

import json
from typing import Any

from prunesched.errors import ScheduleError
from prunesched.runtime.schedule import BlockCache, Schedule

FORMATS = ("prunesched", "cache-dit")
"""``prunesched``: the schedule document (``docs/schedule.md``); ``cache-dit``: :func:`to_cache_dit`."""


def export_text(schedule: Schedule, format: str) -> str:
    """``schedule`` as a file of ``format`` (one of :data:`FORMATS`); a schedule the format cannot express is refused."""
    if format not in FORMATS:
        raise ScheduleError(f"unknown schedule format {format!r}; valid: {', '.join(FORMATS)}")
    document = schedule.to_dict() if format == "prunesched" else to_cache_dit(schedule)
    return json.dumps(document, indent=2) + "\n"


def to_cache_dit(schedule: Schedule) -> dict[str, Any]:
    """The config a cache-dit user loads with ``cache_dit.load_configs(path)`` (JSON is YAML), or whose ``cache_config``
    they pass as ``DBCacheConfig(**...)``; the schedule document rides along under ``prunesched_schedule``.

    ``steps_computation_mask[i]`` is 0 where step ``i`` is a block-cache step (an integer depth ``b`` is
    ``F = B = b + 1``), 1 where it is full; the first step is 1 whatever it asks, as the runtime computes it
    in full (no cache exists yet). The leading full steps are cache-dit's warm-up. A schedule that caches
    no step gets cache-dit's smallest span, F1B0, which then never runs.
    """
    spans: dict[BlockCache, int] = {}
    for i, step in enumerate(schedule.steps):
        if step.prune:
            raise ScheduleError(
                f"step {i} prunes {step.prune:g} of the tokens, which cache-dit cannot express; valid: a schedule without pruning"
            )
        if step.forecast:
            raise ScheduleError(
                f"step {i} forecasts its cached residual at order {step.forecast}, which cache-dit's static mask cannot express "
                "(its cached steps copy the residual); valid: forecast 0"
            )
        if step.cache == "reuse":
            raise ScheduleError(
                f"step {i} is a reuse step, which cache-dit cannot express (its cached steps run their first blocks); "
                "valid: full and block-cache steps"
            )
        if i and isinstance(step.cache, (int, BlockCache)):
            spans.setdefault(BlockCache.of(step.cache), i)
    if len(spans) > 1:
        named = ", ".join(f"{span} (first at step {i})" for span, i in spans.items())
        raise ScheduleError(
            f"cached steps compute different blocks, {named}; cache-dit runs one span: valid: the same first and last in every step"
        )
    span = next(iter(spans), BlockCache(1, 0))
    if span.first < 1:
        raise ScheduleError(f"cached steps compute {span}, no first block; valid for cache-dit: a span with first >= 1 (Fn_compute_blocks)")
    mask = [int(i == 0 or step.cache == "full") for i, step in enumerate(schedule.steps)]
    return {
        "cache_config": {
            "Fn_compute_blocks": span.first,
            "Bn_compute_blocks": span.last,
            "num_inference_steps": len(mask),
            "steps_computation_mask": mask,
            "steps_computation_policy": "static",
            "max_warmup_steps": mask.index(0) if 0 in mask else len(mask),
            "warmup_interval": 1,
        },
        "prunesched_schedule": schedule.to_dict(),
    }
