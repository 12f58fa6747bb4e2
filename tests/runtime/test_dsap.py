"""DSAP's prune-less set: the configured attention blocks prune nothing for exactly the first tau iterations, with any method."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest

import prunesched
from prunesched import PruneLess, Schedule, ScheduleError
from prunesched.runtime.methods import AtedmConfig, SitoConfig
from tests.runtime.helpers import generate

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "schedule.schema.json").read_text())
TAU = 2


def loop_length(pipe) -> int:
    pipe.scheduler.set_timesteps(6)
    return len(pipe.scheduler.timesteps)


@pytest.mark.parametrize(
    ("which", "prune_less"),
    [
        ("sd_pipe", {"down_blocks.0.attentions.0", "up_blocks.2.attentions.2"}),  # the first down and last up attention block
        ("sdxl_pipe", {"down_blocks.1.attentions.0", "up_blocks.1.attentions.2"}),  # of the level that prunes
    ],
)
@pytest.mark.parametrize("method", [SitoConfig(), AtedmConfig(iterations=2)], ids=["sito", "atedm"])
def test_the_dsap_blocks_prune_nothing_for_exactly_tau_iterations(which, prune_less, method, request):
    pipe = request.getfixturevalue(which)
    schedule = Schedule.uniform(loop_length(pipe), prune=0.5, method=method)
    with prunesched.apply(pipe, dataclasses.replace(schedule, prune_less=PruneLess(TAU))) as handle:
        generate(pipe)
        slots = [s.name for s in handle.slots]
        for record in handle.records:
            assert sorted(record.tokens) == sorted(slots)
            for slot, (kept, n) in record.tokens.items():
                held = record.index < TAU and slot.rsplit(".transformer_blocks.", 1)[0] in prune_less
                scoring_layer = isinstance(method, AtedmConfig) and which == "sdxl_pipe" and slot.endswith(".0")  # sees all tokens
                assert (kept == n) == (held or scoring_layer), (record.index, slot, kept, n)


def test_a_list_of_blocks_is_checked_against_the_unet(sd_pipe):
    schedule = dataclasses.replace(
        Schedule.uniform(loop_length(sd_pipe), prune=0.5), prune_less=PruneLess(3, ("up_blocks.9.attentions.0",))
    )
    with pytest.raises(ScheduleError, match=r"prune_less block 'up_blocks.9.attentions.0' is not an attention block of this UNet; valid: "):
        prunesched.apply(sd_pipe, schedule)


def test_prune_less_round_trips_through_json_resamples_with_the_schedule_and_leaves_other_hashes_alone():
    plain = Schedule.uniform(51, prune=0.5, method="atedm")
    dsap = dataclasses.replace(plain, prune_less=PruneLess(15))
    assert "prune_less" not in plain.to_dict()  # schedules without it keep the hashes they always had
    assert dsap.hash != plain.hash
    assert Schedule.from_json(dsap.to_json()) == dsap
    jsonschema.validate(json.loads(dsap.to_json()), SCHEMA)
    assert dsap.resample(26).prune_less == PruneLess(8)  # 15 of 51 is 7.6 of 26
    with pytest.raises(ScheduleError, match="prune_less steps must be an integer >= 0"):
        PruneLess(-1)
    with pytest.raises(ScheduleError, match="prune_less blocks must be 'dsap' or a list"):
        PruneLess(3, "all")
