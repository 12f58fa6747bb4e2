"""The cost model: a schedule's cost composed from per-step costs matches the schedule run end to end."""

from __future__ import annotations

import statistics
from collections.abc import Iterator

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from prunesched.evaluation.cost import FULL, CostModel, labels
from prunesched.evaluation.generation import GenerationSpec, ImageGenerator
from prunesched.models.loading import load_pipeline
from prunesched.runtime.paper_tables import dato_ours_b1
from prunesched.runtime.schedule import Schedule


@pytest.fixture(scope="module")
def generator() -> Iterator[ImageGenerator]:
    """The tiny SD pipeline at 50 PNDM steps (51 loop iterations, the length of DaTo's Table 6 schedule), one thread.

    One thread, because on a shared two-core machine a second OpenMP thread waiting for its sibling
    adds noise that has nothing to do with the schedule.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield ImageGenerator(load_pipeline("tiny-sd"), GenerationSpec("tiny-sd", ("a photo of a cat",), (0,), 50, 7.5, 1))
    torch.set_num_threads(threads)


def test_predicted_cost_tracks_end_to_end_runs(generator, tmp_path):
    """All-full, DeepCache every 3rd step, and DaTo Table 6 "Ours-b1" (the issue's three schedules).

    Each is run end to end and its call time expressed in the full steps of the same call, which
    the machine's drift cannot move; the median of three runs is compared with the prediction.
    The bound is coarse on purpose, so a wrong composition fails and a noisy shared machine does
    not: how close the prediction comes (2-5 % median error) is the evaluation benchmark's to
    measure (``experiments/bench_eval.py``, docs/benchmarks.md).
    """
    model = CostModel(generator, tmp_path, repeats=3)
    b1 = dato_ours_b1()
    schedules = {
        "all-full": Schedule.uniform(51, method=b1.method),
        "deepcache-3": Schedule(steps=Schedule.deepcache(51, interval=3, branch=0).steps, method=b1.method),
        "dato-b1": b1,
    }
    for name, schedule in schedules.items():
        predicted = model.table(schedule).steps(schedule)
        measured = statistics.median(model.measure(schedule) for _ in range(3))
        assert measured == pytest.approx(predicted, rel=0.25), name
    table = model.table(b1)
    assert table.relative_latency(b1) < 0.5 * table.relative_latency(schedules["all-full"])


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
