"""Search spaces: genomes decode to valid schedules and back, canonically; configs are checked."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

import prunesched
from prunesched.errors import ConfigError, ScheduleError
from prunesched.runtime.schedule import PruneLess, Schedule, StepPlan
from prunesched.search.spaces import BlockSpace, DatoSpace, DsapSpace, space_from_config, space_to_config, warmed_up
from tests.runtime.helpers import generate


def test_dato_genomes_decode_to_their_steps_with_the_first_iteration_full():
    space = space_from_config({"kind": "dato", "steps": 4, "ratios": [0.3, 0.5], "caches": ["reuse", 0, "full"]})
    schedule = space.decode([2, 1, 0, 1, 0, 1])
    assert schedule.steps == (StepPlan("full", 0.0), StepPlan("full", 0.5), StepPlan(0, 0.3), StepPlan("reuse", 0.0))
    assert schedule.method.name == "dato"


def test_every_dato_genome_round_trips_through_its_canonical_form():
    space = DatoSpace(steps=3, ratios=(0.3, 0.7))
    genomes = list(itertools.product(range(3), range(3), range(2), range(2)))
    hashes = {}
    for genome in genomes:
        schedule = space.decode(genome)
        canonical = space.canonical(genome)
        assert space.decode(canonical) == schedule
        assert space.canonical(canonical) == canonical
        hashes.setdefault(schedule.hash, set()).add(canonical)
    assert all(len(c) == 1 for c in hashes.values())
    # the ratio gene of a reuse step cannot matter: 3 caches x 2 ratios, minus 1 per reuse step
    assert len(hashes) == (2 * 2 + 1) ** 2


def test_dato_seeds_are_uniform_deepcache_style_schedules_from_the_dearest_to_the_cheapest():
    space = DatoSpace(steps=11, caches=("reuse", 1, 0, "full"))
    seeds = np.array(space.seeds())
    # branch 0 between: 5 patterns x 5 ratios; reuse between: 3 more (all-full is the same either way) and all-reuse
    assert len(seeds) == len(set(map(tuple, seeds))) == 5 * 5 + 3 * 5 + 1
    assert (seeds >= 0).all() and (seeds <= space.upper).all()
    schedules = [space.decode(seed) for seed in seeds]
    for schedule in schedules:
        steps = schedule.steps[1:]
        assert len({s.prune for s in steps if s.cache != "reuse"}) <= 1  # one ratio for every step: not step-aware
        assert {s.cache for s in steps} in ({"full"}, {"full", 0}, {0}, {"full", "reuse"}, {"reuse"})  # shallowest branch or reuse
    assert [s.cache for s in schedules[0].steps] == ["full"] * 11  # the dearest first
    assert [s.cache for s in schedules[-1].steps] == ["full"] + ["reuse"] * 10  # the cheapest last


def test_a_warm_up_variant_computes_the_first_fifth_of_the_loop_in_full_and_keeps_the_rest():
    space = DatoSpace(steps=21, caches=("reuse", 0, "full"), ratios=(0.0, 0.3, 0.5))
    deepcache = space.encode(Schedule.deepcache(21, 3, 0, method="dato"))
    warm = space.decode(warmed_up(space, deepcache))
    assert "".join("F" if s.cache == "full" else "0" for s in warm.steps) == "FFFF" + "00F00F00F00F00F00"  # MagCache's 4 of 21
    uniform = Schedule.uniform(21, "full", 0.3, method="dato")
    pruned = space.encode(replace(uniform, steps=(StepPlan("full", 0.0), *uniform.steps[1:])))  # the space's first step prunes nothing
    assert [s.prune for s in space.decode(warmed_up(space, pruned)).steps] == [0.0] * 4 + [0.3] * 17  # unpruned, too
    assert warmed_up(space, space.encode(Schedule.uniform(21, method="dato"))) is None, "already full: no variant"
    always_pruned = DatoSpace(steps=21, caches=("reuse", 0, "full"), ratios=(0.5,))
    assert warmed_up(always_pruned, always_pruned.seeds()[0]) is None, "no unpruned full step after the first one"
    cached_only = DatoSpace(steps=21, caches=("reuse", 0), ratios=(0.0,))  # iteration 0 alone is full: no warm-up held
    assert warmed_up(cached_only, cached_only.encode(Schedule.deepcache(21, 21, 0, method="dato"))) is None


def test_dsap_decodes_tau_to_the_prune_less_blocks_rho_blocks_and_deepcache_interval():
    """DSAP: tau holds only the prune-less blocks unpruned for the first tau iterations; every other block prunes rho from
    iteration 0 (the space used to switch pruning off everywhere for those iterations)."""
    space = DsapSpace(steps=8, taus=(0, 3), ratios=(0.4, 0.6), block_sets=("highest-resolution", "all"), intervals=(1, 3), branches=(0, 1))
    schedule = space.decode([1, 1, 1, 1, 1])
    assert [s.cache for s in schedule.steps] == ["full", 1, 1, "full", 1, 1, "full", 1]
    assert [s.prune for s in schedule.steps] == [0.6] * 8
    assert schedule.prune_less == PruneLess(steps=3, blocks="dsap")
    assert schedule.slots == "all"
    assert space.encode(schedule) == (1, 1, 1, 1, 1)
    assert space.decode([0, 1, 1, 1, 1]).prune_less is None, "tau 0: no prune-less set, the schedule a plain one would be"


def test_every_dsap_genome_round_trips_through_its_schedule_document():
    space = DsapSpace(
        steps=6, taus=(0, 2, 4), ratios=(0.3, 0.5), block_sets=("highest-resolution", "all"), intervals=(1, 2), branches=(0, 1)
    )
    hashes = set()
    for genome in itertools.product(*(range(u + 1) for u in space.upper)):
        schedule = space.decode(genome)
        stored = Schedule.from_json(schedule.to_json())  # as a search stores and exports it
        assert space.decode(space.encode(stored)) == schedule
        assert space.canonical(genome) == genome
        hashes.add(schedule.hash)
    assert len(hashes) == 3 * 2 * 2 * (1 + 2), "distinct but for the branch gene of interval 1, which cannot matter"


def test_blocks_genomes_decode_phase_by_phase_and_round_trip_through_their_canonical_form():
    space = BlockSpace(steps=10, phases=2, firsts=(1, 2), lasts=(0, 1), intervals=(1, 2, 5), ratios=(0.0, 0.5))
    schedule = space.decode([1, 0, 1, 1, 0, 1, 2, 0])  # F2B0 every 2nd step at 0.5, then F1B1 after one full step unpruned
    assert [str(s.cache) for s in schedule.steps] == ["full", "F2B0", "full", "F2B0", "full", "full", "F1B1", "F1B1", "F1B1", "F1B1"]
    assert [s.prune for s in schedule.steps] == [0.5] * 5 + [0.0] * 5
    assert space.encode(schedule) == (1, 0, 1, 1, 0, 1, 2, 0)
    assert space.canonical([1, 1, 0, 0, 1, 1, 0, 0]) == (0,) * 8  # all full: the blocks do not matter
    for genome in space.random(np.random.default_rng(0), 100):
        assert space.decode(space.canonical(genome)) == space.decode(genome)
    seeds = [space.decode(g) for g in space.seeds()]
    assert {str(s.steps[1].cache) for s in seeds} == {"full", "F1B0", "F2B1"} and len({s.hash for s in seeds}) == len(seeds)


def test_space_tables_round_trip_through_their_config():
    for space in (
        DatoSpace(steps=5, ratios=(0.2, 0.4)),
        DsapSpace(steps=9, block_sets=("all", ("down_blocks.0.attentions.0",))),
        BlockSpace(steps=9, phases=2, firsts=(0, 3), ratios=(0.0, 0.7)),
    ):
        assert space_from_config(space_to_config(space)) == space


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"kind": "tome", "steps": 5}, "unknown space kind 'tome'; valid: dato, dsap, blocks"),
        ({"kind": "blocks", "steps": 5, "phases": 6}, "phases must be an integer from 1 to 5"),
        ({"kind": "dsap", "steps": 5, "method": "cat"}, "for a DiT use the dato or blocks space"),
        ({"kind": "blocks", "steps": 5, "firsts": [-1]}, "firsts must be an integer from 0"),
        ({"kind": "blocks", "steps": 5, "ratios": [0.0, 1.0]}, "prune ratio 1.0 is out of range"),
        ({"kind": "dato"}, "needs 'steps'"),
        ({"kind": "dato", "steps": 1}, "steps must be an integer from 2 to 1,000"),
        ({"kind": "dato", "steps": 5, "ratio": [0.3]}, "unknown key 'ratio' in \\[space\\]"),
        ({"kind": "dato", "steps": 5, "ratios": []}, "ratios must be a non-empty list"),
        ({"kind": "dato", "steps": 5, "ratios": 0.5}, "ratios must be a non-empty list, got 0.5"),
        ({"kind": "dato", "steps": 5, "ratios": [0.9]}, "prune ratio 0.9 is out of range"),
        ({"kind": "dato", "steps": 5, "ratios": [0.3, 0.9, 0.5]}, "prune ratio 0.9 is out of range"),
        ({"kind": "dsap", "steps": 5, "block_sets": ["everything"]}, "unknown slots 'everything'"),
        ({"kind": "dsap", "steps": 5, "slots": "all"}, "unknown key 'slots' in \\[space\\] of kind 'dsap'"),
        ({"kind": "dato", "steps": 5, "caches": ["sometimes"]}, "unknown cache value 'sometimes'"),
        ({"kind": "dato", "steps": 5, "method": {"name": "magic"}}, "magic"),
    ],
)
def test_bad_space_tables_are_refused_with_the_valid_values(table, message):
    with pytest.raises((ConfigError, ScheduleError), match=message):
        space_from_config(table)


def test_a_genome_outside_the_bounds_is_refused():
    with pytest.raises(ScheduleError, match="does not fit the dato space"):
        DatoSpace(steps=3).decode([3, 0, 0, 0])


def test_a_dsap_schedule_holds_only_the_prune_less_blocks_for_its_first_tau_iterations(sd_pipe):
    """On a real (tiny) UNet: in the first tau iterations DSAP's blocks, the first attention block of the first down
    stage and the last of the last up stage, compute on all their tokens while the other slots already prune."""
    sd_pipe.scheduler.set_timesteps(6)
    space = DsapSpace(steps=len(sd_pipe.scheduler.timesteps), taus=(2,), ratios=(0.5,), block_sets=("highest-resolution",), intervals=(1,))
    with prunesched.apply(sd_pipe, space.decode([0, 0, 0, 0, 0])) as handle:
        generate(sd_pipe)
    prune_less = {"down_blocks.0.attentions.0.transformer_blocks.0", "up_blocks.2.attentions.2.transformer_blocks.0"}
    assert prune_less < {slot.name for slot in handle.slots}
    for record in handle.records:
        held = {slot for slot, (kept, n) in record.tokens.items() if kept == n}
        assert held == (prune_less if record.index < 2 else set()), record.index


def test_dato_forecast_genes_decode_per_step_and_round_trip_canonically():
    """One forecast gene per step after the cache and ratio genes; a full step's cannot matter and is canonically 0."""
    space = space_from_config({"kind": "dato", "steps": 3, "ratios": [0.3, 0.5], "forecasts": [0, 1, 2]})
    assert len(space.upper) == 3 * 2 and list(space.upper[4:]) == [2, 2]
    schedule = space.decode([1, 0, 1, 0, 2, 1])
    assert schedule.steps == (StepPlan("full"), StepPlan(0, 0.5, forecast=2), StepPlan("reuse", 0.0, forecast=1))
    assert space.canonical([2, 2, 0, 0, 1, 2]) == (2, 2, 0, 0, 0, 0)
    hashes: dict[str, set] = {}
    for genome in itertools.product(*(range(u + 1) for u in space.upper)):
        canonical = space.canonical(genome)
        assert space.decode(canonical) == space.decode(genome) and space.canonical(canonical) == canonical
        hashes.setdefault(space.decode(genome).hash, set()).add(canonical)
    assert all(len(c) == 1 for c in hashes.values())
    assert len(hashes) == (1 * 3 + 2 * 3 + 2) ** 2, "per step: reuse at 3 orders, branch 0 at 2 ratios x 3 orders, full at 2 ratios"
    seeds = [space.decode(g) for g in space.seeds()]
    assert {s.forecast for s in seeds} == {0, 1, 2} and len({s.hash for s in seeds}) == len(seeds)


def test_a_single_forecast_order_adds_no_gene_and_applies_to_every_cache_step():
    assert len(DatoSpace(steps=4).upper) == len(DatoSpace(steps=4, forecasts=(1,)).upper) == 6
    schedule = DatoSpace(steps=4, forecasts=(1,)).decode([0, 1, 2, 0, 0, 0])
    assert [(s.cache, s.forecast) for s in schedule.steps] == [("full", 0), ("reuse", 1), (0, 1), ("full", 0)]


def test_dsap_and_blocks_spaces_take_one_forecast_gene_per_cache_choice():
    dsap = DsapSpace(steps=6, taus=(0,), ratios=(0.5,), block_sets=("highest-resolution",), intervals=(3,), forecasts=(0, 2))
    assert list(dsap.upper) == [0, 0, 0, 0, 0, 1]
    assert [s.forecast for s in dsap.decode([0, 0, 0, 0, 0, 1]).steps] == [0, 2, 2, 0, 2, 2]
    assert len(dsap.seeds()) == 2 and dsap.encode(dsap.decode([0, 0, 0, 0, 0, 1])) == (0, 0, 0, 0, 0, 1)
    blocks = BlockSpace(steps=8, phases=2, firsts=(1, 2), lasts=(0,), intervals=(1, 2), forecasts=(0, 1))
    assert len(blocks.upper) == 2 * 5
    schedule = blocks.decode([0, 0, 1, 0, 1, 1, 0, 1, 0, 0])
    assert [(str(s.cache), s.forecast) for s in schedule.steps[:2]] == [("full", 0), ("F1B0", 1)]
    assert [(str(s.cache), s.forecast) for s in schedule.steps[4:6]] == [("full", 0), ("F2B0", 0)]
    assert blocks.encode(schedule) == (0, 0, 1, 0, 1, 1, 0, 1, 0, 0)
    for genome in blocks.random(np.random.default_rng(0), 50):
        assert blocks.decode(blocks.canonical(genome)) == blocks.decode(genome)
    assert {s.forecast for g in blocks.seeds() for s in blocks.decode(g).steps} == {0, 1}
    for space in (dsap, blocks, DatoSpace(steps=5, forecasts=(0, 2))):
        assert space_from_config(space_to_config(space)) == space


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"kind": "dato", "steps": 5, "forecasts": [0, 3]}, r"\[space\] forecasts must be an integer from 0 to 2, got 3"),
        ({"kind": "blocks", "steps": 5, "forecasts": [1.0]}, r"\[space\] forecasts must be an integer from 0 to 2, got 1.0"),
        ({"kind": "dsap", "steps": 5, "forecasts": []}, r"\[space\] forecasts must be a non-empty list"),
        ({"kind": "dato", "steps": 5, "forecasts": 1}, r"\[space\] forecasts must be a non-empty list, got 1"),
    ],
)
def test_bad_forecast_orders_are_refused_in_one_line(table, message):
    with pytest.raises(ConfigError, match=message) as info:
        space_from_config(table)
    assert "\n" not in str(info.value)


def test_a_decoded_forecast_genome_runs_on_a_tiny_unet(sd_pipe):
    sd_pipe.scheduler.set_timesteps(6)
    space = DatoSpace(steps=len(sd_pipe.scheduler.timesteps), ratios=(0.0,), forecasts=(0, 1, 2))
    n = space.steps - 1
    genome = [2, 1, 1, 0, 2, 1] + [0] * n + [0, 1, 2, 2, 1, 2]  # full, branch 0 (order 1, 2), reuse (order 2), full, 0 (2)
    with prunesched.apply(sd_pipe, space.decode(genome)) as handle:
        generate(sd_pipe)
    assert [(r.performed, r.forecast) for r in handle.records] == [
        ("full", 0),
        ("full", 0),
        (0, 1),
        (0, 1),
        ("reuse", 1),
        ("full", 0),
        (0, 2),
    ]


def test_a_space_built_in_code_with_a_bad_order_is_refused_by_its_check():
    for space in (DatoSpace(steps=4, forecasts=(0, 3)), BlockSpace(steps=4, forecasts=(3,)), DsapSpace(steps=4, forecasts=(0, 5))):
        with pytest.raises(ScheduleError, match=r"forecast [35] is not an order; valid: 0, 1, 2"):
            space.check()
