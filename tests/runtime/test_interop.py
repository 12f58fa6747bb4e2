"""A schedule as cache-dit's config: the per-step compute mask, the block span, and what cache-dit cannot express."""

from __future__ import annotations

import json

import pytest

from prunesched import BlockCache, Schedule, ScheduleError, StepPlan
from prunesched.runtime.interop import export_text, to_cache_dit


def schedule(*caches: int | str | BlockCache, prune: float = 0.0) -> Schedule:
    return Schedule(steps=tuple(StepPlan(c, prune) for c in caches))


def test_cached_steps_are_zeros_of_the_mask_with_their_span_and_the_schedule_rides_along():
    """The first step asks for a cache that does not exist yet: the runtime computes it in full, so the mask says 1.
    An integer depth b is the first and last b + 1 blocks; the leading full steps are cache-dit's warm-up."""
    source = schedule(1, "full", "full", 1, 1, "full", 1).with_provenance(search=3)
    document = to_cache_dit(source)
    assert document["cache_config"] == {
        "Fn_compute_blocks": 2,
        "Bn_compute_blocks": 2,
        "num_inference_steps": 7,
        "steps_computation_mask": [1, 1, 1, 0, 0, 1, 0],
        "steps_computation_policy": "static",  # a 0 step always uses the cache ("dynamic" would test a threshold)
        "max_warmup_steps": 3,
        "warmup_interval": 1,
    }
    assert Schedule.from_dict(document["prunesched_schedule"]) == source


def test_an_explicit_span_is_written_as_cache_dits_fn_and_bn():
    config = to_cache_dit(schedule("full", BlockCache(8, 0), BlockCache(8, 0), "full"))["cache_config"]
    assert (config["Fn_compute_blocks"], config["Bn_compute_blocks"], config["steps_computation_mask"]) == (8, 0, [1, 0, 0, 1])


def test_a_schedule_without_cached_steps_computes_every_step_under_cache_dits_smallest_span():
    config = to_cache_dit(Schedule.uniform(3))["cache_config"]
    assert config["steps_computation_mask"] == [1, 1, 1] and config["max_warmup_steps"] == 3
    assert (config["Fn_compute_blocks"], config["Bn_compute_blocks"]) == (1, 0)  # cache-dit asserts Fn >= 1


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (schedule("full", 0, prune=0.3), r"^step 0 prunes 0.3 of the tokens, which cache-dit cannot express; valid: a schedule without"),
        (schedule("full", "reuse"), r"^step 1 is a reuse step, which cache-dit cannot express .*; valid: full and block-cache steps$"),
        (
            schedule("full", 0, "full", BlockCache(1, 0)),
            r"^cached steps compute different blocks, F1B1 \(first at step 1\), F1B0 \(first at step 3\); .* the same first and last",
        ),
        (schedule("full", BlockCache(0, 3)), r"^cached steps compute F0B3, no first block; valid for cache-dit: .* first >= 1"),
    ],
)
def test_what_cache_dit_cannot_express_is_refused_in_one_line_naming_what_is_valid(source, message):
    with pytest.raises(ScheduleError, match=message) as error:
        to_cache_dit(source)
    assert "\n" not in str(error.value)


def test_the_prunesched_format_is_the_schedule_document_and_others_are_refused():
    source = schedule("full", "reuse", prune=0.2)
    assert Schedule.from_json(export_text(source, "prunesched")) == source
    assert json.loads(export_text(schedule("full", 0), "cache-dit"))["cache_config"]["steps_computation_mask"] == [1, 0]
    with pytest.raises(ScheduleError, match="unknown schedule format 'yaml'; valid: prunesched, cache-dit"):
        export_text(source, "yaml")


def test_a_forecast_step_is_refused_for_cache_dit():
    source = Schedule(steps=(StepPlan("full"), StepPlan(0), StepPlan(0, forecast=2)))
    with pytest.raises(ScheduleError, match="step 2 forecasts its cached residual at order 2, which cache-dit's static mask cannot"):
        to_cache_dit(source)
