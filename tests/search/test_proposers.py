"""Proposers: the paper's first generation, deterministic snapshots, pymoo's short asks, and the synthetic front."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from prunesched.runtime.schedule import StepPlan
from prunesched.search import snapshot
from prunesched.search.evaluators import SyntheticEvaluator, synthetic_front
from prunesched.search.pareto import front_indices
from prunesched.search.proposers import ProposerConfig, make_proposer
from prunesched.search.spaces import DatoSpace

SPACE = DatoSpace(steps=6)


def _objectives(genomes):
    evaluator = SyntheticEvaluator()
    values = [evaluator.evaluate(SPACE.decode(g)) for g in genomes]
    return np.array([[m["error"]["value"], m["cost"]["value"]] for m in values])


@pytest.mark.parametrize(("backend", "sampler"), [("pymoo", "nsga2"), ("optuna", "nsga2"), ("optuna", "tpe"), ("random", "nsga2")])
def test_a_snapshot_after_tell_asks_exactly_what_the_original_asks(backend, sampler):
    proposer = make_proposer(SPACE, ProposerConfig(backend=backend, sampler=sampler, population=6, generations=5), seed=3)
    for _ in range(2):
        genomes = proposer.ask()
        proposer.tell(_objectives(genomes), np.ones(len(genomes), dtype=bool))
    copy = snapshot.loads(snapshot.dumps(proposer))  # through the allow-list of what a proposer is made of
    assert copy.generation == proposer.generation == 2
    np.testing.assert_array_equal(copy.ask(), proposer.ask())


@pytest.mark.parametrize("backend", ["pymoo", "optuna", "random"])
def test_the_first_generation_mixes_uniform_seed_schedules_and_random_ones(backend):
    proposer = make_proposer(SPACE, ProposerConfig(backend=backend, population=10, seed_fraction=0.5), seed=0)
    genomes = [tuple(g) for g in proposer.ask()]
    assert len(genomes) == 10
    seeds = set(SPACE.seeds())
    assert sum(g in seeds for g in genomes) >= 5


def test_pymoo_asks_that_return_nothing_end_the_search_instead_of_failing():
    space = DatoSpace(steps=2, caches=("reuse", "full"), ratios=(0.5,))  # two distinct genomes in all
    proposer = make_proposer(space, ProposerConfig(population=4, generations=50), seed=0)
    asked = []
    while not proposer.done():
        genomes = proposer.ask()
        asked.append(len(genomes))
        objectives = np.array([[float(g[0]), 1.0 - g[0]] for g in genomes]).reshape(-1, 2)
        proposer.tell(objectives, np.ones(len(genomes), dtype=bool))
    assert asked[0] == 2  # duplicates of the two genomes are eliminated
    assert 0 in asked[1:]
    assert proposer.generation < 50


def test_failed_evaluations_are_ranked_behind_every_success_by_pymoo():
    proposer = make_proposer(SPACE, ProposerConfig(population=8, generations=3), seed=1)
    genomes = proposer.ask()
    ok = np.arange(len(genomes)) % 2 == 0
    proposer.tell(_objectives(genomes), ok)
    survivors = proposer.algorithm.pop.get("X")
    best_rank = proposer.algorithm.pop.get("rank")
    failed = {tuple(g) for g, success in zip(genomes, ok) if not success}
    assert all(tuple(x) not in failed for x, r in zip(survivors, best_rank) if r == 0)


def test_the_synthetic_front_is_the_brute_force_front():
    space = DatoSpace(steps=4, ratios=(0.3, 0.6))
    evaluator = SyntheticEvaluator()
    points = []
    for genome in itertools.product(*[range(u + 1) for u in space.upper]):
        metrics = evaluator.evaluate(space.decode(genome))
        points.append([metrics["error"]["value"], metrics["cost"]["value"]])
    points = np.array(points)
    brute = points[front_indices(points)]
    options = [[StepPlan("full", 0.0)]] + [[StepPlan("reuse", 0.0)] + [StepPlan(c, r) for c in (0, "full") for r in (0.3, 0.6)]] * 3
    np.testing.assert_allclose(synthetic_front(options), brute)
