"""Proposers: the paper's first generation, snapshots as data, pymoo's short asks, and the synthetic front."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from prunesched.errors import StorageError
from prunesched.runtime.schedule import BlockCache, Schedule, StepPlan
from prunesched.search import snapshot
from prunesched.search.evaluators import SyntheticEvaluator, synthetic_front
from prunesched.search.pareto import front_indices
from prunesched.search.proposers import ProposerConfig, choice_mutation, make_proposer
from prunesched.search.spaces import DatoSpace, warmed_up

SPACE = DatoSpace(steps=6)


def _objectives(genomes):
    evaluator = SyntheticEvaluator()
    values = [evaluator.evaluate(SPACE.decode(g)) for g in genomes]
    return np.array([[m["error"]["value"], m["cost"]["value"]] for m in values])


@pytest.mark.parametrize(("backend", "sampler"), [("pymoo", "nsga2"), ("optuna", "nsga2"), ("optuna", "tpe"), ("random", "nsga2")])
def test_a_snapshot_after_tell_asks_exactly_what_the_original_asks(backend, sampler):
    config = ProposerConfig(backend=backend, sampler=sampler, population=6, generations=5)
    proposer = make_proposer(SPACE, config, seed=3)
    for generation in range(3):
        genomes = proposer.ask()
        ok = np.arange(len(genomes)) % 4 != generation  # a failure or two in every generation
        proposer.tell(_objectives(genomes), ok)
    data = snapshot.dumps(proposer)
    json.loads(data, parse_constant=lambda c: pytest.fail(f"{c} in a snapshot"))  # strict JSON
    copy = snapshot.loads(data, SPACE, config, seed=3)
    assert copy.generation == proposer.generation == 3
    assert snapshot.dumps(copy) == data
    np.testing.assert_array_equal(copy.ask(), proposer.ask())


ASK_TWICE = """
import sys, numpy as np
from prunesched.search.proposers import ProposerConfig, make_proposer
from prunesched.search.spaces import DatoSpace
from tests.search.test_proposers import _objectives, SPACE
proposer = make_proposer(SPACE, ProposerConfig(backend=sys.argv[1], sampler=sys.argv[2], population=6, generations=5), seed=3)
for _ in range(3):
    genomes = proposer.ask()
    proposer.tell(_objectives(genomes), np.ones(len(genomes), dtype=bool))
print(proposer.ask().tolist())
"""


@pytest.mark.parametrize(("backend", "sampler"), [("pymoo", "nsga2"), ("optuna", "nsga2"), ("optuna", "tpe")])
def test_asks_depend_on_the_seed_alone_not_on_the_process(backend, sampler):
    """No global random state leaks in: two fresh processes with one seed ask for the same genomes."""
    runs = [
        subprocess.run([sys.executable, "-c", ASK_TWICE, backend, sampler], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1] and runs[0].startswith("[[")


def test_a_snapshot_is_refused_when_it_does_not_fit_the_search():
    config = ProposerConfig(population=4, generations=3)
    proposer = make_proposer(SPACE, config, seed=0)
    genomes = proposer.ask()
    proposer.tell(_objectives(genomes), np.ones(len(genomes), dtype=bool))
    document = json.loads(snapshot.dumps(proposer))
    with pytest.raises(StorageError, match="backend 'pymoo'/'nsga2' but the search's config says 'optuna'"):
        snapshot.loads(snapshot.dumps(proposer), SPACE, ProposerConfig(backend="optuna", population=4), seed=0)
    document["state"]["population"][0]["genome"] = [99] * len(SPACE.upper)
    with pytest.raises(StorageError, match=r"state is malformed: population member 0's genome .* does not fit the space"):
        snapshot.loads(json.dumps(document).encode(), SPACE, config, seed=0)
    with pytest.raises(StorageError, match=r"not a JSON proposer state .* never unpickles"):
        snapshot.loads(b"\x80\x04\x95\x10\x00", SPACE, config, seed=0)


@pytest.mark.parametrize("backend", ["pymoo", "optuna", "random"])
def test_the_first_generation_mixes_uniform_seed_schedules_and_random_ones(backend):
    proposer = make_proposer(SPACE, ProposerConfig(backend=backend, population=10, seed_fraction=0.5), seed=0)
    genomes = [tuple(g) for g in proposer.ask()]
    assert len(genomes) == 10
    seeds = set(SPACE.seeds())
    assert sum(g in seeds for g in genomes) >= 5


def test_the_first_generation_starts_from_the_baselines_then_their_warm_up_variants_then_uniform_seeds():
    space = DatoSpace(steps=21, caches=("reuse", 0, "full"), ratios=(0.0, 0.5))
    baselines = [space.encode(Schedule.deepcache(21, n, 0, method="dato")) for n in (2, 3, 4)]
    config = ProposerConfig(population=6, seed_fraction=1.0)
    seeds = [tuple(g) for g in make_proposer(space, config, seed=0, baselines=baselines).seed_genomes()]
    assert seeds[:3] == baselines
    assert seeds[3:] == [warmed_up(space, b) for b in baselines]
    fewer = make_proposer(space, ProposerConfig(population=6, seed_fraction=5 / 6), seed=0, baselines=baselines)
    assert [tuple(g) for g in fewer.seed_genomes()][3:] == seeds[3:5], "the warm-ups in the baselines' order, up to the share"
    more = make_proposer(space, ProposerConfig(population=8, seed_fraction=1.0), seed=0, baselines=baselines)
    extra = [tuple(g) for g in more.seed_genomes()][6:]
    assert len(extra) == 2 and set(extra) <= set(space.seeds()), "then uniform seeds fill the share"


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


def _mutated(mutation, genome: np.ndarray, upper: np.ndarray, count: int) -> np.ndarray:
    from pymoo.core.population import Population
    from pymoo.core.problem import Problem

    problem = Problem(n_var=len(upper), n_obj=2, xl=0, xu=upper, vtype=int)
    population = Population.new(X=np.tile(genome, (count, 1)).astype(float))
    return np.rint(mutation(problem, population, random_state=np.random.default_rng(0)).get("X")).astype(int)


def test_choice_mutation_moves_a_gene_to_another_of_its_values_each_as_likely():
    """The paper's random choice mutation (§3.3): about one gene per individual, never out of bounds, never a fixed one."""
    upper = np.array([2] * 10 + [5] * 10 + [0])  # cache genes of 3 values, ratio genes of 6, one gene with a single value
    genome = np.array([1] * 10 + [2] * 10 + [0])
    children = _mutated(choice_mutation(1.0), genome, upper, 4000)
    changed = children != genome
    assert 0.8 < changed.sum(axis=1).mean() < 1.2  # 1/genes each: 20 of 21 genes can move
    assert not changed[:, -1].any() and (children >= 0).all() and (children <= upper).all()
    for gene, values in ((0, 3), (15, 6)):
        counts = np.bincount(children[changed[:, gene], gene], minlength=values)
        others = np.delete(counts, genome[gene])
        assert counts[genome[gene]] == 0 and others.min() > 0.6 * others.mean()


def test_polynomial_mutation_almost_never_moves_a_gene_of_few_values_which_choice_mutation_does():
    """Why choice mutation is the default: DaTo's released PM (eta 15, rounding) leaves a 3-valued cache gene where it was."""
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair

    upper, genome = np.array([2] * 21), np.ones(21, dtype=int)
    polynomial = _mutated(PM(prob=1.0, eta=15.0, vtype=float, repair=RoundingRepair()), genome, upper, 2000)
    choice = _mutated(choice_mutation(1.0), genome, upper, 2000)
    assert (polynomial != genome).any(axis=1).mean() < 0.05
    assert (choice != genome).any(axis=1).mean() > 0.5


def test_failed_evaluations_are_ranked_behind_every_success_by_pymoo():
    proposer = make_proposer(SPACE, ProposerConfig(population=8, generations=3), seed=1)
    genomes = proposer.ask()
    ok = np.arange(len(genomes)) % 2 == 0
    proposer.tell(_objectives(genomes), ok)
    failed = {tuple(g) for g, success in zip(genomes, ok) if not success}
    best = [tuple(m["genome"]) for m in proposer.state()["population"] if m["rank"] == 0]
    assert best and not failed & set(best)


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


def test_the_synthetic_problem_prices_block_caches_by_the_blocks_they_compute():
    """A depth b computes 2 (b + 1) blocks, as on a DiT: it costs what its block cache costs, and computing fewer
    blocks is cheaper and worse."""
    evaluator = SyntheticEvaluator()

    def values(cache: Any) -> tuple[float, float]:
        metrics = evaluator.evaluate(Schedule(steps=(StepPlan("full"), StepPlan(cache), StepPlan(cache))))
        return metrics["error"]["value"], metrics["cost"]["value"]

    assert values(1) == values(BlockCache(2, 2)) and values(0) == values(BlockCache(1, 1))
    error_few, cost_few = values(BlockCache(1, 0))
    error_many, cost_many = values(BlockCache(3, 1))
    assert cost_few < cost_many and error_few > error_many
