"""AT-EDM applied to tiny SD-1.x (one transformer layer per block) and SDXL (two) pipelines."""

from __future__ import annotations

import numpy as np
import pytest

import prunesched
from prunesched import Schedule, ScheduleError
from prunesched.runtime.methods import AtedmConfig
from tests.runtime.helpers import generate

STEPS = 6


def loop_length(pipe) -> int:
    pipe.scheduler.set_timesteps(STEPS)
    return len(pipe.scheduler.timesteps)


@pytest.mark.parametrize("which", ["sd_pipe", "sdxl_pipe"])
@pytest.mark.parametrize(
    "method", [AtedmConfig(), AtedmConfig(iterations=3), AtedmConfig(source="cross", iterations=3)], ids=["converged", "fixed", "cross"]
)
def test_pruned_generation_records_the_kept_tokens_and_remove_restores_the_pipeline(which, method, request):
    pipe = request.getfixturevalue(which)
    reference = generate(pipe)
    with prunesched.apply(pipe, Schedule.uniform(loop_length(pipe), prune=0.5, method=method)) as handle:
        pruned = generate(pipe)
        layers = [s.name for s in handle.slots]
        for record in handle.records:
            n = next(iter(record.tokens.values()))[1]
            kept = n - int(0.5 * n)
            if which == "sd_pipe":  # one layer per block: its cross-attention and feed-forward run on the kept tokens
                assert record.tokens == {name: (kept, n) for name in layers}
            else:  # the first layer of each block sees all tokens, the second only the kept ones
                assert record.tokens == {name: (n if name.endswith(".0") else kept, n) for name in layers}
    assert pruned.shape == reference.shape and np.isfinite(pruned).all()
    assert not np.array_equal(reference, pruned)
    assert np.array_equal(reference, generate(pipe))


@pytest.mark.parametrize("which", ["sd_pipe", "sdxl_pipe"])
def test_the_explicit_scoring_attention_matches_the_models_own_when_nothing_is_pruned(which, request):
    pipe = request.getfixturevalue(which)
    reference = generate(pipe)
    # a ratio this small prunes int(0.001 * N) = 0 tokens: only the explicit attention computation differs
    with prunesched.apply(pipe, Schedule.uniform(loop_length(pipe), prune=0.001, method=AtedmConfig(iterations=2))) as handle:
        same = generate(pipe)
        assert all(kept == n for r in handle.records for kept, n in r.tokens.values())
    np.testing.assert_allclose(same, reference, atol=1e-4)


def test_later_layers_of_a_block_run_on_the_kept_tokens_only(sdxl_pipe):
    schedule = Schedule.uniform(loop_length(sdxl_pipe), prune=0.5, method=AtedmConfig(iterations=2))
    seen = {}
    with prunesched.apply(sdxl_pipe, schedule) as handle:
        second = next(s for s in handle.slots if s.name.endswith(".1")).block
        hook = second.attn1.register_forward_pre_hook(lambda _m, args: seen.update(tokens=args[0].shape[1]))
        generate(sdxl_pipe)
        hook.remove()
        n = next(iter(handle.records[0].tokens.values()))[1]
    assert seen["tokens"] == n - int(0.5 * n)


def test_a_partial_attention_block_is_refused(sdxl_pipe):
    one_layer = Schedule(
        steps=Schedule.uniform(6, prune=0.5).steps, method=AtedmConfig(), slots=("down_blocks.1.attentions.0.transformer_blocks.1",)
    )
    with pytest.raises(ScheduleError, match="atedm prunes whole attention blocks"):
        prunesched.apply(sdxl_pipe, one_layer)


def test_atedm_settings_are_checked_when_the_schedule_is_made():
    with pytest.raises(ScheduleError, match="iterations must be an integer >= 0"):
        AtedmConfig(iterations=-1)
    with pytest.raises(ScheduleError, match="source must be one of self, cross"):
        AtedmConfig(source="both")
    with pytest.raises(ScheduleError, match=r"method 'atedm' accepts 0 to 0.99"):
        Schedule.uniform(4, prune=1.0, method="atedm")
    assert Schedule.from_json(Schedule.uniform(4, prune=0.6, method=AtedmConfig(iterations=5)).to_json()).method == AtedmConfig(
        iterations=5
    )
