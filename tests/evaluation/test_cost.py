"""The cost model: a schedule's predicted cost is the sum of the table entries its steps name, in full steps.

How close the prediction comes to a real run on a real machine is a timing goal, measured by the
evaluation benchmark (``prunesched.bench.evaluation.measure_cost_model``, ``experiments/bench_eval.py``,
docs/benchmarks.md), not asserted here: the tests below give the profiler step times that follow a
known cost per step plan, on a machine whose speed changes between every timed call.
"""

from __future__ import annotations

import itertools

import pytest
from torch.utils.flop_counter import FlopCounterMode

from prunesched.evaluation.cost import FULL, CostModel, CostTable, labels
from prunesched.evaluation.generation import ImageGenerator
from prunesched.evaluation.settings import GenerationSpec
from prunesched.models.loading import load_pipeline
from prunesched.runtime.paper_tables import dato_ours_b1
from prunesched.runtime.schedule import Schedule, StepPlan
from prunesched.timing import Sample

OVERHEAD = 0.4
"""The fake pipeline call's time outside its steps, in full steps."""
SLOWDOWN = 1.25
"""The fake unpatched pipeline's call time over the patched all-full call's."""


def step_cost(step: StepPlan, first: bool) -> float:
    """What the fake machine spends on a step, in full steps: the first step is computed in full whatever it asks
    for (no cache exists yet), a reuse step computes nothing whatever its prune ratio, pruning shortens a computed step."""
    cache = "full" if first else step.cache
    if cache == "reuse":
        return 0.02
    return (1.0 if cache == "full" else 0.3 * (1 + int(cache))) * (1 - 0.5 * step.prune)


@pytest.fixture(scope="module")
def generator() -> ImageGenerator:
    """The tiny SD pipeline at 50 PNDM steps: 51 loop iterations, the length of DaTo's Table 6 schedule."""
    return ImageGenerator(load_pipeline("tiny-sd"), GenerationSpec("tiny-sd", ("a photo of a cat",), (0,), 50, 7.5, 1))


@pytest.fixture
def fake_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Step times that follow :func:`step_cost`, on a machine whose speed changes with every timed call."""
    speeds = itertools.cycle((1.0, 1.7, 0.6, 1.3))

    def timed(self: CostModel, schedule: Schedule) -> tuple[list[float], float]:
        second = 0.05 * next(speeds)  # this call's full step
        return [second * step_cost(step, i == 0) for i, step in enumerate(schedule.steps)], second * OVERHEAD

    def latency(self: ImageGenerator, schedule: Schedule | None, repeats: int, scope: str = "loop") -> tuple[list[Sample], list[Sample]]:
        return [Sample(1.0, 1.0)] * repeats, [Sample(SLOWDOWN, SLOWDOWN)] * repeats

    monkeypatch.setattr(CostModel, "_time", timed)
    monkeypatch.setattr(CostModel, "_count", lambda self, schedule, table: None)  # MACs: the next test
    monkeypatch.setattr(ImageGenerator, "latency", latency)


@pytest.mark.usefixtures("fake_machine")
def test_predicted_cost_is_the_sum_of_the_table_entries_the_steps_name(generator, tmp_path):
    """All-full, DeepCache every 3rd step, DaTo Table 6 "Ours-b1" (the issue's three schedules), and a schedule whose
    first step asks for a cache that does not exist yet."""
    model = CostModel(generator, tmp_path, repeats=3)
    b1 = dato_ours_b1()
    schedules = {
        "all-full": Schedule.uniform(51, method=b1.method),
        "deepcache-3": Schedule(steps=Schedule.deepcache(51, interval=3, branch=0).steps, method=b1.method),
        "dato-b1": b1,
        "reuse-first": Schedule(steps=(StepPlan("reuse", 0.5), *b1.steps[1:]), method=b1.method),
    }
    for name, schedule in schedules.items():
        table = model.table(schedule)
        expected = OVERHEAD + sum(step_cost(step, i == 0) for i, step in enumerate(schedule.steps))
        assert table.steps(schedule) == pytest.approx(expected), name
        assert table.steps(schedule) == pytest.approx(table.overhead + sum(table.relative[n] for n in labels(schedule))), name
        assert model.measure(schedule) == pytest.approx(expected), f"{name}: a measured run in the same unit, drift and all"
        assert table.latency_s(schedule) == pytest.approx(table.full_s * expected), name
        assert table.relative_latency(schedule) == pytest.approx(expected / ((OVERHEAD + 51) * SLOWDOWN)), name

    table = model.table(b1)
    assert table.relative[FULL] == 1.0 and table.overhead == pytest.approx(OVERHEAD)  # the unit: a full step
    assert table.unaccelerated == pytest.approx((OVERHEAD + 51) * SLOWDOWN)  # the unpatched pipeline, in that unit
    assert labels(schedules["reuse-first"])[0] == "full@0.5"  # the missing cache falls back to a full, pruned step
    assert {labels(b1)[i] for i, step in enumerate(b1.steps) if step.cache == "reuse"} == {"reuse@0.0"}
    needed = {name for schedule in schedules.values() for name in labels(schedule)}
    assert set(table.relative) == needed | {FULL}, "every plan a schedule needs is profiled, and nothing else"


def test_a_missing_table_entry_is_an_error_not_a_guess():
    table = CostTable(key={}, relative={FULL: 1.0})
    with pytest.raises(KeyError, match=r"reuse@0\.0"):
        table.steps(Schedule(steps=(StepPlan("full"), StepPlan("reuse", 0.3))))


def test_the_same_steps_in_another_order_cost_exactly_the_same():
    """Summed in order, 1 + 0.05 + 0.35 and 1 + 0.35 + 0.05 differ in the last bit, and a front then takes the costs apart."""
    table = CostTable(key={}, relative={FULL: 1.0, "0@0.0": 0.05, "reuse@0.0": 0.35}, unaccelerated=2.0)
    one = Schedule(steps=(StepPlan("full"), StepPlan(0), StepPlan("reuse")))
    other = Schedule(steps=(StepPlan("full"), StepPlan("reuse"), StepPlan(0)))
    assert labels(one)[1:] == ["0@0.0", "reuse@0.0"] and labels(other)[1:] == ["reuse@0.0", "0@0.0"]
    assert table.relative_latency(one) == table.relative_latency(other) == 1.4 / 2.0


def test_macs_are_exact_sums_and_the_table_is_profiled_once_per_machine(tmp_path, monkeypatch):
    generator = ImageGenerator(load_pipeline("tiny-sd"), GenerationSpec("tiny-sd", ("a cat",), (0,), 14, 7.5, 1))
    model = CostModel(generator, tmp_path, repeats=1)
    deepcache = Schedule.deepcache(15, interval=3, branch=0)
    table = model.table(deepcache)
    full, branch = table.macs[FULL], table.macs["0@0.0"]
    assert 0 < branch < full / 2
    with FlopCounterMode(display=False) as counter:  # one end-to-end call, counted as a whole
        generator.first_batch(deepcache)
    assert table.schedule_macs(deepcache) == counter.get_total_flops() // 2
    assert table.relative_macs(Schedule.uniform(15)) == 1.0
    assert set(labels(deepcache)) <= set(table.relative)
    timed = []
    monkeypatch.setattr(CostModel, "_time", lambda self, schedule: timed.append(schedule) or ([1.0] * 15, 0.0))
    again = CostModel(generator, tmp_path, repeats=1).table(deepcache)
    assert again.relative == table.relative and timed == []  # read from disk, nothing profiled
    CostModel(generator, tmp_path, repeats=1).table(Schedule.deepcache(15, interval=2, branch=1))
    assert timed  # a new plan (branch 1) is profiled and added


def test_the_workers_of_a_machine_share_one_table_so_a_schedule_costs_the_same_on_each(tmp_path):
    generator = ImageGenerator(load_pipeline("tiny-sd"), GenerationSpec("tiny-sd", ("a cat",), (0,), 14, 7.5, 1))
    first, second = CostModel(generator, tmp_path, repeats=1), CostModel(generator, tmp_path, repeats=1)
    deepcache = Schedule.deepcache(15, interval=3, branch=0)
    assert first.table(deepcache).relative == second.table(deepcache).relative  # both hold the table now
    branch_1 = Schedule.deepcache(15, interval=2, branch=1)
    profiled = first.table(branch_1).relative["1@0.0"]  # a plan new to both: the first worker to need it profiles it
    timed: list[Schedule] = []
    second._time = lambda schedule: timed.append(schedule) or ([1.0] * 15, 0.0)  # type: ignore[method-assign]
    assert second.table(branch_1).relative["1@0.0"] == profiled and timed == []  # the second reads it, times nothing
    assert second.table(branch_1).relative_latency(branch_1) == first.table(branch_1).relative_latency(branch_1)
