"""Search spaces: integer genomes that map to Schedules and back.

A space is built from the ``[space]`` table of a search config, so its value sets, step count
and token method are data, not code. ``decode`` may be many-to-one where a gene cannot matter
(the prune ratio of a step that skips the network); the memo by schedule hash then sees such
genomes as one candidate, stored with its canonical genome.

Every space takes ``forecasts``, the forecast orders its cache and reuse steps may use (default
``[0]``: they copy the cache). With more than one, each space adds a gene per choice of cache (per
step in ``dato``, once in ``dsap``, per phase in ``blocks``) after its other genes; with one, no
gene, so a space without forecast orders has the genome it always had.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, ClassVar

import numpy as np

from prunesched.calibration.thresholds import retained
from prunesched.checks import check_keys, check_number
from prunesched.errors import ConfigError, ScheduleError
from prunesched.runtime.methods import TokenMethod, method_from_dict
from prunesched.runtime.schedule import FORECAST_ORDERS, BlockCache, Cache, PruneLess, Schedule, Slots, StepPlan

Genome = tuple[int, ...]

PAPER_RATIOS = (0.3, 0.4, 0.5, 0.6, 0.7)
"""DaTo §3.3's prune ratios."""

SEED_INTERVALS = (1, 2, 3, 5)
"""Refresh intervals of the uniform (not step-aware) schedules that seed the first generation; a DaTo space adds one
full iteration only (the first), its cheapest pattern."""

MAX_STEPS = 1_000
"""Loop iterations at most: DDPM's 1,000 steps, the longest loop in use."""
MAX_VALUES = 100
"""Entries at most in each value list of a ``[space]`` table (``ratios``, ``caches``, ``taus``, ...)."""
MAX_DSAP_SCHEDULES = 10_000
"""Schedules at most in a dsap space (the product of its list lengths): checking the space decodes every one of them."""


@dataclass(frozen=True)
class Space:
    """What every space provides: genome bounds, decode/encode, and uniform seed genomes."""

    kind: ClassVar[str] = ""
    steps: int
    method: TokenMethod = field(default_factory=lambda: method_from_dict("dato"))
    forecasts: tuple[int, ...] = (0,)

    @property
    def upper(self) -> np.ndarray:
        """Inclusive upper bound of each gene (lower bounds are 0)."""
        raise NotImplementedError

    def decode(self, genome: Sequence[int]) -> Schedule:
        raise NotImplementedError

    def encode(self, schedule: Schedule) -> Genome:
        raise NotImplementedError

    def seeds(self) -> list[Genome]:
        """Uniform, not step-aware genomes the first generation starts from (paper §3.3)."""
        raise NotImplementedError

    def canonical(self, genome: Sequence[int]) -> Genome:
        """The genome stored for the schedule ``genome`` decodes to."""
        return self.encode(self.decode(genome))

    def check(self) -> None:
        """Raise :class:`ScheduleError` unless every value of the space makes a valid schedule."""
        raise NotImplementedError

    def random(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return rng.integers(0, self.upper + 1, size=(count, len(self.upper)))

    def _check_genome(self, genome: Sequence[int]) -> list[int]:
        values = [int(g) for g in genome]
        if len(values) != len(self.upper) or any(not 0 <= g <= u for g, u in zip(values, self.upper)):
            raise ScheduleError(
                f"genome {values} does not fit the {self.kind} space: {len(self.upper)} genes with bounds 0..{list(self.upper)}"
            )
        return values

    def _schedule(self, plans: Sequence[StepPlan], slots: Slots, prune_less: PruneLess | None = None) -> Schedule:
        return Schedule(steps=tuple(plans), method=self.method, slots=slots, prune_less=prune_less)

    @property
    def _forecast_genes(self) -> int:
        """Genes per forecast choice: 1 when there are orders to choose from, 0 when ``forecasts`` holds one."""
        return int(len(self.forecasts) > 1)

    def _plan(self, cache: Cache, prune: float, forecast: int) -> StepPlan:
        """A step of the space: its forecast order ``self.forecasts[forecast]``, except a full step's, which is 0."""
        return StepPlan(cache, prune, 0 if cache == "full" else self.forecasts[forecast])

    def _forecast_gene(self, step: StepPlan, what: str) -> int:
        """The gene of ``step``'s forecast order; a full step's cannot matter and is 0."""
        return 0 if step.cache == "full" else _index(self.forecasts, step.forecast, what)

    def _forecast_seeds(self) -> list[tuple[int, ...]]:
        """The forecast genes of seed genomes: every order in turn, or none where the space has no forecast gene."""
        return [(f,) for f in range(len(self.forecasts))] if self._forecast_genes else [()]


@dataclass(frozen=True)
class DatoSpace(Space):
    """DaTo's per-step space: each iteration picks a cache choice and a prune ratio; iteration 0 is full and unpruned.

    The genome is the cache index of iterations 1..n-1 followed by their ratio index (DaTo's two
    vectors), then with several ``forecasts`` their forecast index. A ``"reuse"`` step never runs the
    network, so its ratio gene is canonically 0; a full step forecasts nothing, so its forecast gene is 0.
    """

    kind: ClassVar[str] = "dato"
    caches: tuple[Cache, ...] = ("reuse", 0, "full")
    ratios: tuple[float, ...] = PAPER_RATIOS
    slots: Slots = "highest-resolution"

    @property
    def upper(self) -> np.ndarray:
        n = self.steps - 1
        return np.array([len(self.caches) - 1] * n + [len(self.ratios) - 1] * n + [len(self.forecasts) - 1] * n * self._forecast_genes)

    def decode(self, genome: Sequence[int]) -> Schedule:
        values = self._check_genome(genome)
        n = self.steps - 1
        plans = [StepPlan("full", 0.0)]
        for c, r, f in zip(values[:n], values[n : 2 * n], values[2 * n :] or [0] * n):
            cache = self.caches[c]
            plans.append(self._plan(cache, 0.0 if cache == "reuse" else self.ratios[r], f))
        return self._schedule(plans, self.slots)

    def encode(self, schedule: Schedule) -> Genome:
        if len(schedule) != self.steps or schedule.steps[0] != StepPlan("full", 0.0):
            raise ScheduleError(f"the dato space holds {self.steps}-step schedules that start with a full unpruned step")
        caches, ratios, forecasts = [], [], []
        for i, step in enumerate(schedule.steps[1:], start=1):
            caches.append(_index(self.caches, step.cache, f"step {i} cache"))
            ratios.append(0 if step.cache == "reuse" else _index(self.ratios, step.prune, f"step {i} prune ratio"))
            forecasts.append(self._forecast_gene(step, f"step {i} forecast"))
        return tuple(caches + ratios + forecasts * self._forecast_genes)

    def check(self) -> None:
        for cache in self.caches:
            for ratio in self.ratios:
                for forecast in range(len(self.forecasts)):
                    self._schedule([StepPlan("full", 0.0), self._plan(cache, ratio, forecast)], self.slots)

    def seeds(self) -> list[Genome]:
        """A full iteration every 1, 2, 3 or 5 iterations or only the first, and between them the shallowest cache
        branch or reuse, at each ratio and forecast order: uniform schedules from the dearest of the space to its
        cheapest, so that the first generation spans the whole cost range (seeded with branches alone, a search never
        reached the cheap end of the synthetic benchmark's front in 2,000 evaluations)."""
        branches = sorted(c for c in self.caches if isinstance(c, int))
        partials = [c for c in (*branches[:1], "reuse") if c in self.caches] or ["full"]
        patterns = [
            ["full" if "full" in self.caches and i % interval == 0 else partial for i in range(1, self.steps)]
            for partial in partials
            for interval in (*SEED_INTERVALS, self.steps)
        ]
        genomes = []
        for pattern in patterns:
            for ratio in self.ratios:
                for forecast in range(len(self.forecasts)):
                    plans = [StepPlan("full", 0.0)] + [self._plan(c, 0.0 if c == "reuse" else ratio, forecast) for c in pattern]
                    genomes.append(self.encode(self._schedule(plans, self.slots)))
        return list(dict.fromkeys(genomes))


@dataclass(frozen=True)
class DsapSpace(Space):
    """A small structured space: DSAP's prune-less first steps, one prune ratio, the blocks that prune, DeepCache interval/branch.

    Genes: ``[tau, rho, block set, interval, branch]``, each an index into its value list, and with
    several ``forecasts`` the forecast order of the cache steps. Iteration
    i is full when ``i % interval == 0`` (else it computes ``branch``) and prunes ``rho`` of the
    tokens of the block set (the schedule's ``slots``), except that for the first ``tau``
    iterations DSAP's prune-less blocks prune nothing (:class:`PruneLess` with its default blocks:
    the first attention block of each down stage and the last of each up stage). ``tau`` 0 is a
    schedule without a prune-less set.
    """

    kind: ClassVar[str] = "dsap"
    taus: tuple[int, ...] = (0, 5, 10, 15, 20)
    ratios: tuple[float, ...] = PAPER_RATIOS
    block_sets: tuple[Slots, ...] = ("highest-resolution", "all")
    intervals: tuple[int, ...] = (1, 2, 3, 5)
    branches: tuple[int, ...] = (0,)

    @property
    def upper(self) -> np.ndarray:
        lists = (self.taus, self.ratios, self.block_sets, self.intervals, self.branches) + (self.forecasts,) * self._forecast_genes
        return np.array([len(v) - 1 for v in lists])

    def decode(self, genome: Sequence[int]) -> Schedule:
        t, r, b, k, c, *f = self._check_genome(genome)
        tau, rho, interval, branch = self.taus[t], self.ratios[r], self.intervals[k], self.branches[c]
        plans = [self._plan("full" if i % interval == 0 else branch, rho, f[0] if f else 0) for i in range(self.steps)]
        return self._schedule(plans, self.block_sets[b], PruneLess(tau) if tau else None)

    def encode(self, schedule: Schedule) -> Genome:
        for genome in self._all_genomes():
            if self.decode(genome) == schedule:
                return genome
        raise ScheduleError("the schedule is not in this dsap space")

    def canonical(self, genome: Sequence[int]) -> Genome:
        """The genome itself: the space is small and a schedule reached twice is one candidate by its hash."""
        return tuple(self._check_genome(genome))

    def check(self) -> None:
        if self.method.name == "cat":
            raise ScheduleError("the dsap space names UNet blocks (prune-less, cache branches); for a DiT use the dato or blocks space")
        for genome in self._all_genomes():
            self.decode(genome)

    def seeds(self) -> list[Genome]:
        return [(0, r, 0, k, 0, *f) for k in range(len(self.intervals)) for r in range(len(self.ratios)) for f in self._forecast_seeds()]

    def _all_genomes(self) -> list[Genome]:
        grids = np.meshgrid(*[np.arange(u + 1) for u in self.upper], indexing="ij")
        return [tuple(int(v) for v in row) for row in np.stack([g.ravel() for g in grids], 1)]


@dataclass(frozen=True)
class BlockSpace(Space):
    """DiT block caching by phase: the loop is cut into ``phases`` equal parts, and each part picks the blocks its
    cached steps compute (the first F and the last B, see :class:`~prunesched.runtime.schedule.BlockCache`), how
    often a full step refreshes the cache, and the share of image tokens CAT reuses (``ratios``, 0 by default).

    Genes: ``[first, last, interval, ratio]`` per phase, each an index into its value list, and with
    several ``forecasts`` the phase's forecast order after them. Iteration i of a phase that starts at
    s is full when ``(i - s) % interval == 0``, else it computes the phase's F and B blocks at its
    forecast order; every iteration of the phase prunes its ratio. Early and late steps of a DiT
    change differently (Δ-DiT caches the back blocks early and the front ones late), which one
    setting for the whole loop cannot express.
    """

    kind: ClassVar[str] = "blocks"
    method: TokenMethod = field(default_factory=lambda: method_from_dict("cat"))
    phases: int = 3
    firsts: tuple[int, ...] = (1, 2, 4, 8)
    lasts: tuple[int, ...] = (0, 1, 2)
    intervals: tuple[int, ...] = (1, 2, 3, 4, 6)
    ratios: tuple[float, ...] = (0.0,)

    @property
    def upper(self) -> np.ndarray:
        lists = (self.firsts, self.lasts, self.intervals, self.ratios) + (self.forecasts,) * self._forecast_genes
        return np.array([len(v) - 1 for v in lists] * self.phases)

    def decode(self, genome: Sequence[int]) -> Schedule:
        values = self._check_genome(genome)
        width = 4 + self._forecast_genes
        plans: list[StepPlan] = []
        for phase, (start, stop) in enumerate(self._bounds()):
            plans += self._phase(start, stop, *values[width * phase : width * (phase + 1)])
        return self._schedule(plans, "highest-resolution")

    def encode(self, schedule: Schedule) -> Genome:
        if len(schedule) != self.steps:
            raise ScheduleError(f"the blocks space holds {self.steps}-step schedules, got {len(schedule)} steps")
        genome: list[int] = []
        for start, stop in self._bounds():
            plans = list(schedule.steps[start:stop])
            cached = next((p.cache for p in plans if isinstance(p.cache, BlockCache)), BlockCache(self.firsts[0], self.lasts[0]))
            first, last = _index(self.firsts, cached.first, "first"), _index(self.lasts, cached.last, "last")
            ratio = _index(self.ratios, plans[0].prune, "prune ratio")
            forecast = next((self._forecast_gene(p, "forecast") for p in plans if isinstance(p.cache, BlockCache)), 0)
            phase = partial(self._phase, start, stop, first, last, ratio=ratio, forecast=forecast)
            interval = next((k for k in range(len(self.intervals)) if phase(k) == plans), None)
            if interval is None:
                raise ScheduleError(f"steps {start}-{stop - 1} are not a phase of this blocks space (a full step every N, one block cache)")
            genome += [first, last, interval, ratio, forecast][: 4 + self._forecast_genes]
        return tuple(genome)

    def check(self) -> None:
        if not isinstance(self.phases, int) or isinstance(self.phases, bool) or not 1 <= self.phases <= self.steps:
            raise ScheduleError(f"phases must be an integer from 1 to the step count {self.steps}, got {self.phases!r}")
        for first in self.firsts:
            BlockCache(first, 0)
        for last in self.lasts:
            BlockCache(0, last)
        for ratio in self.ratios:
            self._schedule([StepPlan("full", ratio)], "highest-resolution")
        for forecast in range(len(self.forecasts)):
            self._schedule([StepPlan("full"), self._plan(BlockCache(1, 0), 0.0, forecast)], "highest-resolution")

    def seeds(self) -> list[Genome]:
        """At every interval, ratio and forecast order, the whole loop at the fewest blocks computed and at the most:
        uniform schedules from the cheapest of the space to the dearest."""
        ends = {(0, 0), (len(self.firsts) - 1, len(self.lasts) - 1)}
        orders = self._forecast_seeds()
        phase = [
            (f, b, k, r, *o) for f, b in sorted(ends) for k in range(len(self.intervals)) for r in range(len(self.ratios)) for o in orders
        ]
        return list(dict.fromkeys(self.canonical(genes * self.phases) for genes in phase))

    def _bounds(self) -> list[tuple[int, int]]:
        return [(p * self.steps // self.phases, (p + 1) * self.steps // self.phases) for p in range(self.phases)]

    def _phase(self, start: int, stop: int, first: int, last: int, interval: int, ratio: int, forecast: int = 0) -> list[StepPlan]:
        cached, every, prune = BlockCache(self.firsts[first], self.lasts[last]), self.intervals[interval], self.ratios[ratio]
        return [self._plan("full" if (i - start) % every == 0 else cached, prune, forecast) for i in range(start, stop)]


SPACES: dict[str, type[Space]] = {cls.kind: cls for cls in (DatoSpace, DsapSpace, BlockSpace)}


def space_from_config(table: Mapping[str, Any]) -> Space:
    """Build a space from the ``[space]`` table of a search config; errors name the valid keys and kinds."""
    data = dict(table)
    kind = data.pop("kind", "dato")
    if kind not in SPACES:
        raise ConfigError(f"unknown space kind {kind!r}; valid: {', '.join(SPACES)}")
    cls = SPACES[kind]
    check_keys(data, ["kind", *cls.__dataclass_fields__], f"[space] of kind {kind!r}")
    if "steps" not in data:
        raise ConfigError("[space] needs 'steps': the number of denoising-loop iterations (PNDM at 50 steps has 51)")
    check_number(data["steps"], "steps", "[space]", integer=True, low=2, high=MAX_STEPS)
    if "method" in data:
        data["method"] = method_from_dict(data["method"])
    for key, value in data.items():
        if isinstance(cls.__dataclass_fields__[key].default, tuple):
            if not isinstance(value, list) or not value:
                raise ConfigError(f"[space] {key} must be a non-empty list, got {value!r:.80}")
            if len(value) > MAX_VALUES:
                raise ConfigError(f"[space] {key} must list at most {MAX_VALUES} values, got {len(value)}")
            data[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    for interval in data.get("intervals", ()):  # a full iteration every N: 0 would divide by zero
        check_number(interval, "intervals", "[space]", integer=True, low=1, high=MAX_STEPS)
    for tau in data.get("taus", ()):
        check_number(tau, "taus", "[space]", integer=True, high=MAX_STEPS)
    for key in ("firsts", "lasts"):  # transformer blocks: the model refuses more than it has
        for count in data.get(key, ()):
            check_number(count, key, "[space]", integer=True, high=MAX_STEPS)
    for order in data.get("forecasts", ()):
        check_number(order, "forecasts", "[space]", integer=True, high=max(FORECAST_ORDERS))
    if "phases" in data:
        check_number(data["phases"], "phases", "[space]", integer=True, low=1, high=data["steps"])
    space = cls(**data)
    if isinstance(space, DsapSpace) and (size := math.prod(int(u) + 1 for u in space.upper)) > MAX_DSAP_SCHEDULES:
        raise ConfigError(f"[space] of kind 'dsap' holds {size:,} schedules, more than {MAX_DSAP_SCHEDULES:,}; shorten its value lists")
    try:
        space.check()
    except (ScheduleError, TypeError) as exc:
        raise ConfigError(f"[space] describes invalid schedules: {exc}") from None
    return space


def space_to_config(space: Space) -> dict[str, Any]:
    """The ``[space]`` table that rebuilds ``space`` (stored with the search)."""
    table: dict[str, Any] = {"kind": space.kind}
    for name in space.__dataclass_fields__:
        value = getattr(space, name)
        if isinstance(value, TokenMethod):
            value = value.to_dict()
        elif isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        table[name] = value
    return table


def genome_of(space: Space, schedule: Schedule) -> Genome | None:
    """The genome of ``schedule`` in ``space``, or None where the space does not hold it exactly."""
    try:
        genome = space.encode(schedule)
    except ScheduleError:
        return None
    return genome if space.decode(genome).hash == schedule.hash else None


def warmed_up(space: Space, genome: Sequence[int]) -> Genome | None:
    """``genome`` with its first iterations computed in full, nothing pruned: as many as diffusers' MagCache always
    computes (its retention, a fifth of the loop); None where that changes nothing or makes a schedule the space
    does not hold.

    A warm-up is the caching field's own practice (cache-dit computes the first 8 steps by default, and DeepCache's
    users advise not caching the first 30-40 %): the first steps lay out the image, and what a cache changes there is
    carried through the rest.
    """
    schedule = space.decode(genome)
    count = retained(len(schedule))
    warm = replace(schedule, steps=(StepPlan("full", 0.0),) * count + schedule.steps[count:])
    warmed = genome_of(space, warm)
    return None if warmed is None or warm.hash == schedule.hash else warmed


def nearest_genome(space: Space, schedule: Schedule) -> Genome:
    """The genome of the schedule in ``space`` nearest ``schedule`` (of the space's length) by :func:`schedule_distance`.

    A schedule the space holds is its own genome. Otherwise one gene at a time takes the value that brings the
    decoded schedule nearest, from the all-zero genome, until no single gene can: exact in the ``dato`` space, whose
    steps have genes of their own, and a local optimum where genes act on several steps together (``dsap``, ``blocks``).
    """
    held = genome_of(space, schedule)
    if held is not None:
        return held
    genome = [0] * len(space.upper)
    best = schedule_distance(space.decode(genome), schedule)
    improved = True
    while improved:
        improved = False
        for gene, upper in enumerate(space.upper):
            for value in range(int(upper) + 1):
                trial = [*genome[:gene], value, *genome[gene + 1 :]]
                distance = schedule_distance(space.decode(trial), schedule)
                if distance < best:
                    genome, best, improved = trial, distance, True
    return space.canonical(genome)


def schedule_distance(a: Schedule, b: Schedule) -> tuple[int, float]:
    """How far apart two schedules of one loop are: first the count of steps one computes in full and the other does
    not (what a threshold method decides), then how many blocks their other steps compute apart, plus the prune ratios'
    difference and the forecast orders'; compared as a pair, the count first."""
    mismatched, apart = 0, 0.0
    for x, y in zip(a.steps, b.steps):
        if (x.cache == "full") != (y.cache == "full"):
            mismatched += 1
        elif x.cache != "full":
            apart += abs(_computed(x.cache) - _computed(y.cache))
        apart += abs(x.prune - y.prune) + abs(x.forecast - y.forecast)
    return mismatched, apart


def _computed(cache: Cache) -> float:
    """A partial step on one scale: the blocks a block cache or depth computes (depth b: 2 b + 2, the mirrored U), and
    -1 for reuse, which runs not even the layers around the blocks that a block cache of no block still runs."""
    return float(BlockCache.of(cache).computed) if isinstance(cache, (int, BlockCache)) else -1.0


def _index(values: Sequence[Any], value: Any, what: str) -> int:
    for i, v in enumerate(values):
        if v == value and type(v) is not bool:
            return i
    raise ScheduleError(f"{what} {value!r} is not in this space; valid: {list(values)}")
