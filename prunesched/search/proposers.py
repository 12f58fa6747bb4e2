"""Proposers: the algorithms that choose which genomes to evaluate next, one generation at a time.

Every proposer has the same ask/tell seam: :meth:`Proposer.ask` returns the next generation's
genomes (possibly fewer than the population, possibly none), the coordinator evaluates them,
and :meth:`Proposer.tell` hands back both objectives, whether each evaluation succeeded, and how
far each breaks the search's guardrails (:mod:`prunesched.search.guardrails`), which NSGA-II and
TPE treat as a constraint violation: a feasible genome beats every infeasible one.

A proposer's state is data: :meth:`Proposer.state` is a JSON document (the population, its
objectives and constraint flags, the told trials, the generation number), and every
:meth:`Proposer.ask` rebuilds pymoo's algorithm or Optuna's study and sampler from that data with
a seed drawn from (search seed, generation). An uninterrupted search and one resumed from a
snapshot (:mod:`prunesched.search.snapshot`) therefore take exactly the same path, and nothing
is ever pickled.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from prunesched.checks import check_number
from prunesched.errors import ConfigError
from prunesched.search.spaces import Space, warmed_up

FAILED_OBJECTIVE = 1e12
"""Objective value given to a failed evaluation; it is also marked infeasible, so it is dominated."""
FAILED_VIOLATION = 1e12
"""Constraint violation given to a failed evaluation: behind every candidate that ran, within its guardrails or not."""

MAX_POPULATION = 10_000
"""Genomes per generation at most: DaTo uses 20; every generation's genomes are held in memory at once."""
MAX_GENERATIONS = 10_000
"""Generations at most: DaTo runs 100."""
MAX_ETA = 1_000.0
"""Largest SBX or polynomial-mutation distribution index (pymoo's defaults are 15 and 20; far above, offspring copy their parents)."""


@dataclass(frozen=True)
class ProposerConfig:
    """The ``[proposer]`` table. Defaults are DaTo's NSGA-II settings (paper §3.3 and its released ratio search).

    Attributes:
        backend: ``"pymoo"`` (NSGA-II via ask/tell), ``"optuna"`` (``sampler`` through ask/tell)
            or ``"random"`` (uniform random genomes, a baseline).
        sampler: Optuna's sampler, ``"nsga2"`` or ``"tpe"``.
        population: genomes per generation, 2 to :data:`MAX_POPULATION`.
        generations: generations to run, the first included, 1 to :data:`MAX_GENERATIONS`.
        mutation: pymoo's mutation operator. ``"choice"`` (the paper's random choice mutation, §3.3): a
            mutated gene takes another of its values, each as likely. ``"polynomial"`` (DaTo's released
            code): pymoo's polynomial mutation with ``mutation_eta`` and rounding, which on genes of
            a few values almost never changes one (a cache gene of 3 values: 0.7 % of mutations at
            eta 15), so the search then explores by crossover alone.
        seed_fraction: share of the first generation taken from the baselines, their warm-up variants and the
            space's uniform, not step-aware schedules; the rest is random (paper §3.3). :meth:`Proposer.seed_genomes`
            says which.
    """

    backend: Literal["pymoo", "optuna", "random"] = "pymoo"
    sampler: Literal["nsga2", "tpe"] = "nsga2"
    population: int = 20
    generations: int = 100
    crossover_prob: float = 0.7
    crossover_eta: float = 7.0
    mutation_prob: float = 0.4
    mutation_eta: float = 15.0
    mutation: Literal["choice", "polynomial"] = "choice"
    eliminate_duplicates: bool = True
    seed_fraction: float = 0.5

    def __post_init__(self) -> None:
        choices = {"backend": ("pymoo", "optuna", "random"), "sampler": ("nsga2", "tpe"), "mutation": ("choice", "polynomial")}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ConfigError(f"[proposer] {name} {getattr(self, name)!r} is not valid; valid: {', '.join(valid)}")
        if self.sampler != "nsga2" and self.backend != "optuna":
            raise ConfigError(f'[proposer] sampler {self.sampler!r} is an Optuna sampler; set backend = "optuna" or leave sampler out')
        check_number(self.population, "population", "[proposer]", integer=True, low=2, high=MAX_POPULATION)
        check_number(self.generations, "generations", "[proposer]", integer=True, low=1, high=MAX_GENERATIONS)
        for name in ("crossover_prob", "mutation_prob", "seed_fraction"):
            check_number(getattr(self, name), name, "[proposer]", high=1.0)
        for name in ("crossover_eta", "mutation_eta"):
            check_number(getattr(self, name), name, "[proposer]", high=MAX_ETA)
        if not isinstance(self.eliminate_duplicates, bool):
            raise ConfigError(f"[proposer] eliminate_duplicates must be true or false, got {self.eliminate_duplicates!r}")


STATE_VERSION = 1
"""Version of the data :meth:`Proposer.state` returns; a snapshot of another version is refused."""


def generation_seed(seed: int, generation: int) -> int:
    """The seed of one generation's ask: a function of the search seed and the generation alone."""
    return int(np.random.SeedSequence([seed, generation]).generate_state(1)[0])


class Proposer:
    """Base of the ask/tell proposers; ``generation`` counts the generations already told.

    Subclasses keep everything :meth:`ask` depends on in :meth:`state` (besides the config, the
    space and the seed, which the search stores); what :meth:`ask` builds lives only until the
    matching :meth:`tell`.
    """

    def __init__(self, space: Space, config: ProposerConfig, seed: int, baselines: Sequence[Sequence[int]] = ()) -> None:
        self.space = space
        self.config = config
        self.seed = seed
        self.baselines = [tuple(int(g) for g in genome) for genome in baselines]
        self.generation = 0

    def done(self) -> bool:
        return self.generation >= self.config.generations

    def ask(self) -> np.ndarray:
        """The next generation's genomes, shape (k, genes) with 0 <= k <= population."""
        raise NotImplementedError

    def tell(self, objectives: np.ndarray, ok: np.ndarray, violations: np.ndarray | None = None) -> None:
        """Objectives (k, 2) of the genomes of the last :meth:`ask`, which evaluations succeeded, and each one's
        guardrail violation (0: within them; None: no guardrails)."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """Everything the next :meth:`ask` depends on, as JSON-compatible data (no NaN or infinity)."""
        return {"generation": self.generation}

    def restore(self, state: Any) -> None:
        """Take over ``state`` (from :meth:`state`); a ``ValueError`` names what does not fit."""
        self.generation = _count(_field(state, "generation"), "generation")

    def initial(self, rng: np.random.Generator) -> np.ndarray:
        """The first generation: :meth:`seed_genomes`, then random genomes up to the population."""
        seeds = self.seed_genomes()
        return np.concatenate([seeds, self.space.random(rng, self.config.population - len(seeds))]).astype(int)

    def seed_genomes(self) -> np.ndarray:
        """The first generation's chosen genomes: the baselines the space holds; then each one's warm-up variant
        (:func:`~prunesched.search.spaces.warmed_up`: its first fifth of iterations in full), in the baselines' order;
        then the space's uniform schedules taken evenly from the list :meth:`Space.seeds` gives (every pattern and ratio
        in turn, so both ends of the cost range).

        Together they fill ``seed_fraction`` of the population, or more when there are more baselines.
        """
        baselines = list(dict.fromkeys(self.baselines))[: self.config.population]
        count = max(0, round(self.config.seed_fraction * self.config.population) - len(baselines))
        warm = [g for g in dict.fromkeys(warmed_up(self.space, b) for b in baselines) if g is not None and g not in baselines]
        picked = warm[:count]
        uniform = [g for g in dict.fromkeys(self.space.seeds()) if g not in baselines + picked]
        rest = min(len(uniform), count - len(picked))
        picked += [uniform[i] for i in np.unique(np.linspace(0, len(uniform) - 1, rest).round().astype(int))] if rest else []
        return np.array(baselines + picked, dtype=int).reshape(-1, len(self.space.upper))

    def _genome(self, value: Any, what: str) -> list[int]:
        genome = _integers(value, what)
        if len(genome) != len(self.space.upper) or any(not 0 <= g <= u for g, u in zip(genome, self.space.upper)):
            raise ValueError(f"{what} {genome} does not fit the space ({len(self.space.upper)} genes, bounds 0..{list(self.space.upper)})")
        return genome


class PymooProposer(Proposer):
    """pymoo NSGA-II over integer genomes: SBX with rounding repair, and random choice (or polynomial) mutation.

    A candidate's guardrail violation is its constraint value ``G``; failed evaluations get
    :data:`FAILED_VIOLATION`, so NSGA-II ranks them behind every candidate that ran.
    pymoo eliminates duplicates within a generation only; the coordinator's memo covers the rest.

    The state is the surviving population (genome, objectives, violation, and the rank and
    crowding distance that pymoo's survival gave it) and whether pymoo ran out of new genomes.
    Each ask sets up a fresh ``NSGA2`` with the generation's seed and hands it that population.
    """

    def __init__(self, space: Space, config: ProposerConfig, seed: int, baselines: Sequence[Sequence[int]] = ()) -> None:
        from pymoo.core.problem import Problem

        super().__init__(space, config, seed, baselines)
        self.problem = Problem(n_var=len(space.upper), n_obj=2, n_ieq_constr=1, xl=0, xu=space.upper, vtype=int)
        self.population: list[dict[str, Any]] = []
        self.exhausted = False
        self._algorithm: Any = None
        self._asked: Any = None

    def done(self) -> bool:
        return super().done() or self.exhausted

    def ask(self) -> np.ndarray:
        from pymoo.core.population import Population

        self._algorithm = self._build()
        asked = self._algorithm.ask()
        self._asked = Population.empty() if asked is None else asked
        if not len(self._asked):
            return np.zeros((0, len(self.space.upper)), dtype=int)
        return np.rint(self._asked.get("X")).astype(int)

    def tell(self, objectives: np.ndarray, ok: np.ndarray, violations: np.ndarray | None = None) -> None:
        if self._asked is None:
            raise RuntimeError("tell() without ask()")
        if len(self._asked):
            failed = np.where(ok[:, None], objectives, FAILED_OBJECTIVE)
            _evaluate(self.problem, self._asked, failed, np.where(ok, _zeros(violations, ok), FAILED_VIOLATION))
            self._algorithm.tell(infills=self._asked)
            self.population = [_member(individual) for individual in self._algorithm.pop]
        else:  # pymoo could make no new genome: it has nothing more to propose
            self.exhausted = True
        self._algorithm = self._asked = None
        self.generation += 1

    def state(self) -> dict[str, Any]:
        return {**super().state(), "exhausted": self.exhausted, "population": self.population}

    def restore(self, state: Any) -> None:
        super().restore(state)
        exhausted = _field(state, "exhausted")
        if not isinstance(exhausted, bool):
            raise ValueError(f"exhausted must be true or false, got {exhausted!r}")
        members = _field(state, "population")
        if not isinstance(members, list) or len(members) > self.config.population:
            raise ValueError(f"population must be a list of at most {self.config.population} members")
        if (self.generation > 0) != bool(members):
            raise ValueError(f"generation {self.generation} with {len(members)} population members")
        population = []
        for i, member in enumerate(members):
            rank, crowding = _field(member, "rank"), _field(member, "crowding")
            population.append(
                {
                    "genome": self._genome(_field(member, "genome"), f"population member {i}'s genome"),
                    "objectives": [_number(v, "an objective") for v in _pair(_field(member, "objectives"))],
                    "violation": _number(_field(member, "violation"), "a violation"),
                    "rank": None if rank is None else _count(rank, "a rank"),
                    "crowding": None if crowding is None else _encoded(_number(crowding, "a crowding distance")),
                }
            )
        self.population, self.exhausted = population, exhausted

    def _build(self) -> Any:
        """A set-up ``NSGA2`` for this generation: its seed, and the stored population as the current one."""
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.core.population import Population
        from pymoo.operators.crossover.sbx import SBX
        from pymoo.operators.mutation.pm import PM
        from pymoo.operators.repair.rounding import RoundingRepair

        config = self.config
        mutation = (
            choice_mutation(config.mutation_prob)
            if config.mutation == "choice"
            else PM(prob=config.mutation_prob, eta=config.mutation_eta, vtype=float, repair=RoundingRepair())
        )
        algorithm = NSGA2(
            pop_size=config.population,
            sampling=self.initial(np.random.default_rng(self.seed)),
            crossover=SBX(prob=config.crossover_prob, eta=config.crossover_eta, vtype=float, repair=RoundingRepair()),
            mutation=mutation,
            eliminate_duplicates=config.eliminate_duplicates,
        )
        # the proposer counts generations itself; pymoo's own termination would only finalise early
        algorithm.setup(self.problem, termination=("n_gen", 2**31), seed=generation_seed(self.seed, self.generation))
        if self.generation == 0:
            return algorithm
        population = Population.new(X=np.array([m["genome"] for m in self.population], dtype=float))
        _evaluate(
            self.problem,
            population,
            np.array([m["objectives"] for m in self.population], dtype=float),
            np.array([m["violation"] for m in self.population], dtype=float),
        )
        for individual, member in zip(population, self.population):
            individual.set("rank", member["rank"])
            individual.set("crowding", None if member["crowding"] is None else _decoded(member["crowding"]))
        algorithm._initialize()  # the start of a run (its clock), without pymoo's initial sampling
        algorithm.pop, algorithm.n_iter, algorithm.is_initialized = population, self.generation + 1, True
        return algorithm


def choice_mutation(prob: float) -> Any:
    """pymoo's mutation for integer genes as the paper describes it (§3.3, "random choice mutation"): each individual
    mutates with probability ``prob``, and then each of its genes with probability 1/genes (pymoo's default, as for
    its polynomial mutation), to another value between its bounds, each as likely."""
    from pymoo.core.mutation import Mutation

    class ChoiceMutation(Mutation):
        def _do(self, problem: Any, X: np.ndarray, *args: Any, random_state: Any = None, **kwargs: Any) -> np.ndarray:
            X = np.rint(X).astype(int)
            low, high = np.broadcast_to(problem.xl, X.shape).astype(int), np.broadcast_to(problem.xu, X.shape).astype(int)
            span = high - low
            mutate = (random_state.random(X.shape) < self.get_prob_var(problem, size=(len(X), 1))) & (span > 0)
            # a shift of 1..span around the gene's range: another of its values, each as likely
            shift = np.floor(random_state.random(X.shape) * span).astype(int) + 1
            return np.where(mutate, low + (X - low + shift) % (span + 1), X)

    return ChoiceMutation(prob=prob)


def _evaluate(problem: Any, population: Any, objectives: np.ndarray, violations: np.ndarray) -> None:
    """Give ``population`` its known objectives and constraint violations the way pymoo evaluates."""
    from pymoo.core.evaluator import Evaluator
    from pymoo.problems.static import StaticProblem

    Evaluator().eval(StaticProblem(problem, F=objectives, G=violations[:, None]), population)


def _member(individual: Any) -> dict[str, Any]:
    rank, crowding = individual.get("rank"), individual.get("crowding")
    return {
        "genome": [int(g) for g in np.rint(individual.X)],
        "objectives": [float(f) for f in individual.F],
        "violation": float(individual.G[0]),
        "rank": None if rank is None else int(rank),
        "crowding": None if crowding is None else _encoded(float(crowding)),
    }


class OptunaProposer(Proposer):
    """Optuna's NSGA-II or TPE sampler through ask/tell; failed evaluations are told as FAIL, guardrail
    violations through the sampler's ``constraints_func`` (Optuna keeps them in each trial's system attributes).

    pymoo's ``mutation_prob`` is per individual, each of whose genes then mutates with
    probability 1/genes; Optuna's is per gene (a mutated gene is redrawn uniformly). Optuna gets
    ``mutation_prob / genes`` so both mutate the same expected number of genes.

    The state is every told trial (genes, values, state and the system attributes in which
    NSGA-II keeps each trial's generation) and the study's system attributes (NSGA-II's parent
    populations). Each ask builds an in-memory study from them with a sampler seeded for the
    generation; generation 0 enqueues the uniform seed schedules first.
    """

    def __init__(self, space: Space, config: ProposerConfig, seed: int, baselines: Sequence[Sequence[int]] = ()) -> None:
        import optuna
        from optuna.distributions import BaseDistribution, IntDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        super().__init__(space, config, seed, baselines)
        self.distributions: dict[str, BaseDistribution] = {f"g{i}": IntDistribution(0, int(u)) for i, u in enumerate(space.upper)}
        self.trials: list[dict[str, Any]] = []
        self.study_attrs: dict[str, Any] = {}
        self._study: Any = None
        self._storage: Any = None
        self._trials: list[Any] = []

    def ask(self) -> np.ndarray:
        self._storage = optuna_storage()
        self._study = self._build(self._storage)
        if self.generation == 0:
            for genome in self.seed_genomes():
                self._study.enqueue_trial({f"g{i}": int(g) for i, g in enumerate(genome)})
        self._trials = [self._study.ask(self.distributions) for _ in range(self.config.population)]
        return np.array([[t.params[name] for name in self.distributions] for t in self._trials], dtype=int)

    def tell(self, objectives: np.ndarray, ok: np.ndarray, violations: np.ndarray | None = None) -> None:
        from optuna.trial import TrialState

        if self._study is None:
            raise RuntimeError("tell() without ask()")
        for trial, values, success, violation in zip(self._trials, objectives, ok, _zeros(violations, ok)):
            if success:
                trial.set_user_attr(VIOLATION_ATTR, float(violation))  # read back by _constraints when the sampler hears of it
                self._study.tell(trial, [float(v) for v in values])
            else:
                self._study.tell(trial, state=TrialState.FAIL)
        self.trials = [
            {
                "genome": [int(t.params[name]) for name in self.distributions],
                "values": None if t.values is None else [float(v) for v in t.values],
                "state": t.state.name,
                "system_attrs": dict(t.system_attrs),
            }
            for t in self._study.get_trials(deepcopy=False)
        ]
        study_id = self._storage.get_study_id_from_name(self._study.study_name)
        self.study_attrs = dict(self._storage.get_study_system_attrs(study_id))
        self._study, self._storage, self._trials = None, None, []
        self.generation += 1

    def state(self) -> dict[str, Any]:
        return {**super().state(), "trials": self.trials, "study_system_attrs": self.study_attrs}

    def restore(self, state: Any) -> None:
        super().restore(state)
        trials, attrs = _field(state, "trials"), _field(state, "study_system_attrs")
        if not isinstance(trials, list) or not isinstance(attrs, dict):
            raise ValueError("trials must be a list and study_system_attrs an object")
        restored = []
        for i, trial in enumerate(trials):
            kind, values, system_attrs = _field(trial, "state"), _field(trial, "values"), _field(trial, "system_attrs")
            if kind not in ("COMPLETE", "FAIL") or (values is None) != (kind == "FAIL") or not isinstance(system_attrs, dict):
                raise ValueError(f"trial {i} is not a COMPLETE trial with values or a FAIL trial without")
            restored.append(
                {
                    "genome": self._genome(_field(trial, "genome"), f"trial {i}'s genome"),
                    "values": None if values is None else [_number(v, "a value") for v in _pair(values)],
                    "state": kind,
                    "system_attrs": system_attrs,
                }
            )
        self.trials, self.study_attrs = restored, attrs

    def _build(self, storage: Any) -> Any:
        """A study in ``storage`` (in memory) holding the told trials, with this generation's sampler."""
        import optuna
        from optuna.samplers import NSGAIISampler, TPESampler
        from optuna.samplers.nsgaii import SBXCrossover
        from optuna.trial import TrialState, create_trial

        config, seed = self.config, generation_seed(self.seed, self.generation)
        if config.sampler == "nsga2":
            with warnings.catch_warnings():  # SBXCrossover is marked experimental; it is the paper's operator
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                crossover = SBXCrossover(eta=config.crossover_eta)
            sampler: Any = NSGAIISampler(
                population_size=config.population,
                crossover=crossover,
                crossover_prob=config.crossover_prob,
                mutation_prob=config.mutation_prob / len(self.space.upper),
                constraints_func=_constraints,
                seed=seed,
            )
        else:
            with warnings.catch_warnings():  # constraints_func is marked experimental in TPESampler
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                sampler = TPESampler(constraints_func=_constraints, seed=seed)
        study = optuna.create_study(storage=storage, directions=["minimize", "minimize"], sampler=sampler)
        study_id = storage.get_study_id_from_name(study.study_name)
        for key, value in self.study_attrs.items():
            storage.set_study_system_attr(study_id, key, value)
        study.add_trials(
            [
                create_trial(
                    state=TrialState[t["state"]],
                    params={f"g{i}": g for i, g in enumerate(t["genome"])},
                    distributions=self.distributions,
                    values=t["values"],
                    system_attrs=t["system_attrs"],
                )
                for t in self.trials
            ]
        )
        return study


VIOLATION_ATTR = "prunesched_violation"
"""The user attribute that carries a trial's guardrail violation to :func:`_constraints`."""


def _constraints(trial: Any) -> list[float]:
    """Optuna's constraint value of a trial (feasible when <= 0): its guardrail violation."""
    return [float(trial.user_attrs.get(VIOLATION_ATTR, 0.0))]


def optuna_storage() -> Any:
    from optuna.storages import InMemoryStorage

    return InMemoryStorage()


class RandomProposer(Proposer):
    """Uniformly random genomes each generation (after the same seeded first generation): the baseline."""

    def ask(self) -> np.ndarray:
        if self.generation == 0:
            return self.initial(np.random.default_rng(self.seed))
        rng = np.random.default_rng(generation_seed(self.seed, self.generation))
        return self.space.random(rng, self.config.population).astype(int)

    def tell(self, objectives: np.ndarray, ok: np.ndarray, violations: np.ndarray | None = None) -> None:
        self.generation += 1


PROPOSERS: dict[str, type[Proposer]] = {"pymoo": PymooProposer, "optuna": OptunaProposer, "random": RandomProposer}


def make_proposer(space: Space, config: ProposerConfig, seed: int, baselines: Sequence[Sequence[int]] = ()) -> Proposer:
    """The proposer ``config`` names; ``baselines`` are genomes its first generation starts with."""
    return PROPOSERS[config.backend](space, config, seed, baselines)


def _zeros(violations: np.ndarray | None, ok: np.ndarray) -> np.ndarray:
    """The violations told, or none (zeros) for a search without guardrails."""
    return np.zeros(len(ok)) if violations is None else np.asarray(violations, dtype=float)


def _field(data: Any, name: str) -> Any:
    if not isinstance(data, dict) or name not in data:
        raise ValueError(f"{name!r} is missing")
    return data[name]


def _count(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what} must be an integer >= 0, got {value!r}")
    return value


def _integers(value: Any, what: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{what} must be a list of integers")
    return list(value)


def _pair(value: Any) -> list[Any]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"expected two objective values, got {value!r}")
    return value


def _number(value: Any, what: str) -> float:
    """A stored number: a finite JSON number, or one of :func:`_encoded`'s strings for an infinity or NaN."""
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ValueError(f"{what} must be a number, got {value!r}")
    return float(value)


def _encoded(value: float) -> float | str:
    """``value`` as strict JSON: pymoo gives the ends of a front an infinite crowding distance."""
    return value if np.isfinite(value) else str(value)


def _decoded(value: float | str) -> float:
    return float(value)
