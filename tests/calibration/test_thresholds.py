"""The threshold rules give, on a hand-made calibration, exactly the schedule each method's rule makes."""

from __future__ import annotations

import pytest

from prunesched.calibration.thresholds import strip, threshold_schedule
from prunesched.errors import ConfigError
from prunesched.runtime.schedule import BlockCache
from tests.calibration.made import made

CHANGE = [0.0, 0.03, 0.03, 0.03, 0.05, 0.01, 0.2, 0.01]
"""Added up from the last computed iteration: 0.03, 0.06, 0.09 (>= 0.07: computed, the sum restarts), 0.05, 0.06, 0.26
(computed), 0.01."""
RATIO = [1.0, 1.0, 1.0, 1.1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.01, 1.0]
"""MagCache's error from the last computed iteration: 0 at iteration 2, then |1 - 1| + |1 - 1.1| = 0.1 at 3 (computed),
0 while the ratio stays 1 until 3 skips in a row are reached, then 0, 0.01, 0.02 (< 0.05)."""


def test_first_block_cache_adds_up_the_first_block_change_and_restarts_after_a_computed_step():
    calibration = made(CHANGE, CHANGE, [1.0] * len(CHANGE))
    schedule = threshold_schedule(calibration, "first_block", 0.07)
    assert strip(schedule) == "FccFccFc"
    assert {s.cache for s in schedule.steps} == {"full", 0} and schedule.prunes is False  # a UNet's cached steps: branch 0


def test_teacache_adds_up_the_output_change_and_computes_the_last_step():
    calibration = made([1.0] * len(CHANGE), CHANGE, [1.0] * len(CHANGE))
    assert strip(threshold_schedule(calibration, "teacache", 0.07)) == "FrrFrrFF"


def test_magcache_keeps_its_first_fifth_skips_at_most_three_in_a_row_and_restarts_its_error():
    calibration = made([1.0] * len(RATIO), [1.0] * len(RATIO), RATIO)
    # retention: int(0.2 * 11 + 0.5) = 2 iterations computed first, as diffusers' MagCacheConfig rounds it
    assert strip(threshold_schedule(calibration, "magcache", 0.05)) == "FFrFrrrFrrr"


def test_on_a_dit_fbcache_computes_the_first_block_and_teacache_and_magcache_reuse_the_blocks_residual():
    calibration = made(CHANGE, CHANGE, [1.0] * len(CHANGE), architecture="dit")
    assert {s.cache for s in threshold_schedule(calibration, "first_block", 0.07).steps} == {"full", BlockCache(1, 0)}
    assert {s.cache for s in threshold_schedule(calibration, "teacache", 0.07).steps} == {"full", BlockCache(0, 0)}


@pytest.mark.parametrize(("rule", "cheapest"), [("first_block", "Fccccccc"), ("teacache", "FrrrrrrF"), ("magcache", "FFrrrFrr")])
def test_a_threshold_of_zero_is_the_full_model_and_a_huge_one_leaves_what_each_method_always_computes(rule, cheapest):
    calibration = made(CHANGE, CHANGE, [1.0] * len(CHANGE))
    assert strip(threshold_schedule(calibration, rule, 0.0)) == "F" * 8
    assert strip(threshold_schedule(calibration, rule, 99.0)) == cheapest


def test_the_schedule_takes_the_token_method_it_is_given_and_an_unknown_rule_is_one_line():
    calibration = made(CHANGE, CHANGE, [1.0] * len(CHANGE))
    assert threshold_schedule(calibration, "teacache", 0.07, "dato").method.name == "dato"
    with pytest.raises(ConfigError, match="unknown threshold method 'fbc'; valid: first_block, teacache, magcache"):
        threshold_schedule(calibration, "fbc", 0.1)
