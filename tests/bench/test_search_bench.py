"""The search benchmark at toy sizes: it runs end to end and its numbers obey what must hold whatever the machine."""

from __future__ import annotations

import pytest

from prunesched.bench.search import SearchBenchConfig, goals, run_search_bench

pytestmark = pytest.mark.usefixtures("ray_local")


def test_the_search_benchmark_runs_and_no_proposer_beats_the_exact_front():
    config = SearchBenchConfig(
        delay_s=0.02,
        sleep_population=4,
        sleep_generations=2,
        steps=4,
        population=4,
        checkpoints=(4, 12),
        max_generations=10,
        proposers=("pymoo-nsga2", "random"),
    )
    result = run_search_bench(config, log=lambda _: None)
    dispatch = result["dispatch"]
    assert dispatch["same_evaluations"]  # one seed, one deterministic evaluator: the same schedules either way
    assert dispatch["runs"]["sleep-1-workers"]["evaluations"] >= 4
    fronts = result["fronts"]
    for entry in fronts["proposers"].values():
        reached = [v for v in entry["fraction_of_optimum_at"].values() if v is not None]
        assert reached and all(0 < v <= 1 + 1e-9 for v in reached)
        assert reached == sorted(reached)  # more evaluations never lose hypervolume
    assert set(result["goals"]) == {"coordinator_overhead_per_evaluation_s", "throughput_2_vs_1_workers"}


def test_the_hypervolume_goal_is_the_best_proposers_fraction_at_500_evaluations():
    fractions = {"pymoo-nsga2": 0.93, "optuna-tpe": 0.96, "random": None}  # random stopped short of 500
    result = {
        "dispatch": {"overhead_per_evaluation_s": 0.01, "throughput_ratio_2_vs_1": 1.9},
        "fronts": {"proposers": {name: {"fraction_of_optimum_at": {"500": value}} for name, value in fractions.items()}},
    }
    goal = goals(result)["hypervolume_fraction_at_500"]
    assert goal["value"] == 0.96 and goal["met"] and "(optuna-tpe)" in goal["goal"]
    result["fronts"]["proposers"]["optuna-tpe"]["fraction_of_optimum_at"]["500"] = 0.94
    assert not goals(result)["hypervolume_fraction_at_500"]["met"]
