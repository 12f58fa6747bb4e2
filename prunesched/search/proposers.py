"""Proposers: the algorithms that choose which genomes to evaluate next, one generation at a time.

Every proposer has the same ask/tell seam: :meth:`Proposer.ask` returns the next generation's
genomes (possibly fewer than the population, possibly none), the coordinator evaluates them,
and :meth:`Proposer.tell` hands back both objectives and whether each evaluation succeeded. A
proposer is a picklable object: the coordinator snapshots it after every ``tell`` and resumes
from the snapshot, never re-running ``setup`` (which would re-seed).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from prunesched.checks import check_number
from prunesched.errors import ConfigError
from prunesched.search.spaces import Space

FAILED_OBJECTIVE = 1e12
"""Objective value given to a failed evaluation; it is also marked infeasible, so it is dominated."""


@dataclass(frozen=True)
class ProposerConfig:
    """The ``[proposer]`` table. Defaults are DaTo's NSGA-II settings (paper §3.3 and its released ratio search).

    Attributes:
        backend: ``"pymoo"`` (NSGA-II via ask/tell), ``"optuna"`` (``sampler`` through ask/tell)
            or ``"random"`` (uniform random genomes, a baseline).
        sampler: Optuna's sampler, ``"nsga2"`` or ``"tpe"``.
        population: genomes per generation.
        generations: generations to run, the first included.
        seed_fraction: share of the first generation taken from the space's uniform, not
            step-aware schedules; the rest is random (paper §3.3).
    """

    backend: Literal["pymoo", "optuna", "random"] = "pymoo"
    sampler: Literal["nsga2", "tpe"] = "nsga2"
    population: int = 20
    generations: int = 100
    crossover_prob: float = 0.7
    crossover_eta: float = 7.0
    mutation_prob: float = 0.4
    mutation_eta: float = 15.0
    eliminate_duplicates: bool = True
    seed_fraction: float = 0.5

    def __post_init__(self) -> None:
        choices = {"backend": ("pymoo", "optuna", "random"), "sampler": ("nsga2", "tpe")}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ConfigError(f"[proposer] {name} {getattr(self, name)!r} is not valid; valid: {', '.join(valid)}")
        if self.sampler != "nsga2" and self.backend != "optuna":
            raise ConfigError(f'[proposer] sampler {self.sampler!r} is an Optuna sampler; set backend = "optuna" or leave sampler out')
        for name, low in (("population", 2), ("generations", 1)):
            check_number(getattr(self, name), name, "[proposer]", integer=True, low=low)
        for name in ("crossover_prob", "mutation_prob", "seed_fraction"):
            check_number(getattr(self, name), name, "[proposer]", high=1.0)
        for name in ("crossover_eta", "mutation_eta"):
            check_number(getattr(self, name), name, "[proposer]")
        if not isinstance(self.eliminate_duplicates, bool):
            raise ConfigError(f"[proposer] eliminate_duplicates must be true or false, got {self.eliminate_duplicates!r}")


class Proposer:
    """Base of the ask/tell proposers; ``generation`` counts the generations already told."""

    def __init__(self, space: Space, config: ProposerConfig, seed: int) -> None:
        self.space = space
        self.config = config
        self.generation = 0

    def done(self) -> bool:
        return self.generation >= self.config.generations

    def ask(self) -> np.ndarray:
        """The next generation's genomes, shape (k, genes) with 0 <= k <= population."""
        raise NotImplementedError

    def tell(self, objectives: np.ndarray, ok: np.ndarray) -> None:
        """Objectives (k, 2) of the genomes of the last :meth:`ask`, and which evaluations succeeded."""
        raise NotImplementedError

    def initial(self, rng: np.random.Generator) -> np.ndarray:
        """The first generation: uniform seed schedules (a spread of them) and random genomes."""
        seeds = np.array(self.space.seeds(), dtype=int).reshape(-1, len(self.space.upper))
        count = min(len(seeds), round(self.config.seed_fraction * self.config.population))
        chosen = seeds[np.sort(rng.choice(len(seeds), size=count, replace=False))] if count else seeds[:0]
        rest = self.space.random(rng, self.config.population - count)
        return np.concatenate([chosen, rest]).astype(int)


class PymooProposer(Proposer):
    """pymoo NSGA-II over integer genomes: SBX and polynomial mutation with rounding repair.

    Failed evaluations get a constraint violation, so NSGA-II ranks them behind every success.
    pymoo eliminates duplicates within a generation only; the coordinator's memo covers the rest.
    """

    def __init__(self, space: Space, config: ProposerConfig, seed: int) -> None:
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.core.problem import Problem
        from pymoo.operators.crossover.sbx import SBX
        from pymoo.operators.mutation.pm import PM
        from pymoo.operators.repair.rounding import RoundingRepair

        super().__init__(space, config, seed)
        self.problem = Problem(n_var=len(space.upper), n_obj=2, n_ieq_constr=1, xl=0, xu=space.upper, vtype=int)
        self.algorithm = NSGA2(
            pop_size=config.population,
            sampling=self.initial(np.random.default_rng(seed)),
            crossover=SBX(prob=config.crossover_prob, eta=config.crossover_eta, vtype=float, repair=RoundingRepair()),
            mutation=PM(prob=config.mutation_prob, eta=config.mutation_eta, vtype=float, repair=RoundingRepair()),
            eliminate_duplicates=config.eliminate_duplicates,
        )
        self.algorithm.setup(self.problem, termination=("n_gen", config.generations), seed=seed)
        self._asked: Any = None

    def done(self) -> bool:
        return super().done() or not self.algorithm.has_next()

    def ask(self) -> np.ndarray:
        from pymoo.core.population import Population

        asked = self.algorithm.ask()
        self._asked = Population.empty() if asked is None else asked
        if not len(self._asked):
            return np.zeros((0, len(self.space.upper)), dtype=int)
        return np.rint(self._asked.get("X")).astype(int)

    def tell(self, objectives: np.ndarray, ok: np.ndarray) -> None:
        from pymoo.core.evaluator import Evaluator
        from pymoo.problems.static import StaticProblem

        if len(self._asked):
            F = np.where(ok[:, None], objectives, FAILED_OBJECTIVE)
            G = np.where(ok, 0.0, 1.0)[:, None]
            Evaluator().eval(StaticProblem(self.problem, F=F, G=G), self._asked)
        self.algorithm.tell(infills=self._asked)
        self._asked = None
        self.generation += 1


class OptunaProposer(Proposer):
    """Optuna's NSGA-II or TPE sampler through ask/tell; failed evaluations are told as FAIL.

    pymoo's ``mutation_prob`` is per individual, each of whose genes then mutates with
    probability 1/genes; Optuna's is per gene (a mutated gene is redrawn uniformly). Optuna gets
    ``mutation_prob / genes`` so both mutate the same expected number of genes.

    The uniform seed schedules are enqueued before the first ask; the study lives in memory and
    is snapshotted with the proposer, so the search database stays the one source of truth.
    """

    def __init__(self, space: Space, config: ProposerConfig, seed: int) -> None:
        import optuna
        from optuna.distributions import IntDistribution
        from optuna.samplers import NSGAIISampler, TPESampler
        from optuna.samplers.nsgaii import SBXCrossover

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        super().__init__(space, config, seed)
        if config.sampler == "nsga2":
            with warnings.catch_warnings():  # SBXCrossover is marked experimental; it is the paper's operator
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                crossover = SBXCrossover(eta=config.crossover_eta)
            sampler: Any = NSGAIISampler(
                population_size=config.population,
                crossover=crossover,
                crossover_prob=config.crossover_prob,
                mutation_prob=config.mutation_prob / len(space.upper),
                seed=seed,
            )
        else:
            sampler = TPESampler(seed=seed)
        self.study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
        self.distributions = {f"g{i}": IntDistribution(0, int(u)) for i, u in enumerate(space.upper)}
        for genome in self.initial(np.random.default_rng(seed))[: round(config.seed_fraction * config.population)]:
            self.study.enqueue_trial({f"g{i}": int(g) for i, g in enumerate(genome)})
        self._trials: list[Any] = []

    def ask(self) -> np.ndarray:
        self._trials = [self.study.ask(self.distributions) for _ in range(self.config.population)]
        return np.array([[t.params[name] for name in self.distributions] for t in self._trials], dtype=int)

    def tell(self, objectives: np.ndarray, ok: np.ndarray) -> None:
        from optuna.trial import TrialState

        for trial, values, success in zip(self._trials, objectives, ok):
            if success:
                self.study.tell(trial, [float(v) for v in values])
            else:
                self.study.tell(trial, state=TrialState.FAIL)
        self._trials = []
        self.generation += 1


class RandomProposer(Proposer):
    """Uniformly random genomes each generation (after the same seeded first generation): the baseline."""

    def __init__(self, space: Space, config: ProposerConfig, seed: int) -> None:
        super().__init__(space, config, seed)
        self.rng = np.random.default_rng(seed)

    def ask(self) -> np.ndarray:
        if self.generation == 0:
            return self.initial(self.rng)
        return self.space.random(self.rng, self.config.population).astype(int)

    def tell(self, objectives: np.ndarray, ok: np.ndarray) -> None:
        self.generation += 1


PROPOSERS: dict[str, type[Proposer]] = {"pymoo": PymooProposer, "optuna": OptunaProposer, "random": RandomProposer}


def make_proposer(space: Space, config: ProposerConfig, seed: int) -> Proposer:
    return PROPOSERS[config.backend](space, config, seed)
