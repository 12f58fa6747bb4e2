"""Evaluators: what a worker does with one candidate schedule, returning metrics only.

An evaluator is built once per worker (it may load a pipeline) and then called for many
schedules. Every metric is a :data:`prunesched.evaluation.stats.Metric`: a value with the number of samples it came from
and a 95 % bootstrap interval when there are several, so a user can see when two points of a
front are not really different. The ``[evaluator]`` table of a search config names a kind of
:data:`SETTINGS` and its settings; configs never name code to import. The ``pipeline`` kind is
:class:`prunesched.evaluation.evaluate.PipelineEvaluator` with
:class:`prunesched.evaluation.settings.PipelineSettings`.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Protocol, TypeAlias

import numpy as np

from prunesched.checks import check_keys, check_number
from prunesched.errors import ConfigError
from prunesched.evaluation.settings import PipelineSettings
from prunesched.evaluation.stats import Metrics, metric
from prunesched.runtime.schedule import BlockCache, Cache, Schedule, StepPlan


class Evaluator(Protocol):
    """Scores one schedule.

    ``metrics`` names the metrics that can be objectives (lower is better for each); ``steps`` is
    the loop length the evaluator's pipeline runs (None: any); ``device`` names where it runs;
    ``full_metrics`` are the unaccelerated model's quality metrics measured the same way, on the first ``images`` of
    its images (what a guardrail bounded by ``"full"`` compares with; empty where there is no such model). ``evaluate``
    scores on the first ``images`` of its images when a search screens candidates on fewer
    (:mod:`prunesched.search.screening`), and leaves out measured latency when ``timed`` is False
    (a validation of a baseline); evaluators without images or timings are never asked to.
    """

    @property
    def steps(self) -> int | None: ...

    @property
    def device(self) -> str: ...

    @property
    def metrics(self) -> tuple[str, ...]: ...

    def full_metrics(self, images: int | None = None) -> Metrics: ...

    def evaluate(self, schedule: Schedule, images: int | None = None, timed: bool = True) -> Metrics: ...


def worker_name() -> str:
    return f"{platform.node()}:{os.getpid()}"


MAX_DELAY_S = 3_600.0
"""The longest a synthetic evaluation may sleep: an hour."""


@dataclass(frozen=True)
class SyntheticSettings:
    """``[evaluator]`` of kind ``synthetic``: ``delay_s`` (at most :data:`MAX_DELAY_S`) makes each evaluation take that long."""

    kind: ClassVar[str] = "synthetic"

    delay_s: float = 0.0

    def __post_init__(self) -> None:
        check_number(self.delay_s, "delay_s", "[evaluator]", high=MAX_DELAY_S)

    def objective_metrics(self) -> tuple[str, ...]:
        return SyntheticEvaluator.metrics

    def default_guardrails(self) -> list[dict[str, object]]:
        return []


class SyntheticEvaluator:
    """A deterministic two-objective schedule problem with a known Pareto front, for tests and benchmarks.

    Each step adds a cost (full 1, branch b 0.3 (b + 1) capped at 0.9, reuse 0.02; pruning
    a fraction p scales a computed step's cost by 1 - 0.6 p) and an error weighted by how early
    the step is (early steps shape the image; DaTo §3.2): 1 for reuse, 0.3 / (b + 1) for a
    branch, plus 0.8 p² for pruning. Both objectives are sums over steps, so the exact front is
    computable (:func:`synthetic_front`).
    """

    metrics = ("error", "cost")
    steps: int | None = None
    device = "cpu (synthetic)"

    def __init__(self, settings: SyntheticSettings = SyntheticSettings()) -> None:
        self.settings = settings

    def full_metrics(self, images: int | None = None) -> Metrics:
        """None: the problem has no unaccelerated model, so its guardrails are bounded by numbers."""
        return {}

    def evaluate(self, schedule: Schedule, images: int | None = None, timed: bool = True) -> Metrics:
        """The problem's exact values (``images`` and ``timed`` change nothing: the problem has no images, noise or timings)."""
        if self.settings.delay_s:
            time.sleep(self.settings.delay_s)
        n = len(schedule)
        error = sum(step_error(step, i, n) for i, step in enumerate(schedule.steps))
        cost = sum(step_cost(step) for step in schedule.steps)
        return {"error": metric([error]), "cost": metric([cost])}


def step_cost(step: StepPlan) -> float:
    if step.cache == "reuse":
        return 0.02
    base = 1.0 if step.cache == "full" else min(0.9, 0.15 * _computed_blocks(step.cache))
    return base * (1.0 - 0.6 * step.prune)


def step_error(step: StepPlan, index: int, steps: int) -> float:
    weight = 1.0 + 2.0 * (1.0 - index / steps)
    if step.cache == "reuse":
        return weight
    cache = 0.0 if step.cache == "full" else 0.6 / max(_computed_blocks(step.cache), 1)
    return weight * (cache + 0.8 * step.prune**2)


def _computed_blocks(cache: Cache) -> int:
    """The blocks a partial step computes in the synthetic problem: depth b computes 2 (b + 1), as on a DiT."""
    assert isinstance(cache, (int, BlockCache))  # the callers price full and reuse steps
    return BlockCache.of(cache).computed


def synthetic_front(options: Sequence[Sequence[StepPlan]]) -> np.ndarray:
    """The exact (error, cost) front of :class:`SyntheticEvaluator` when step i may take any plan of ``options[i]``."""
    from prunesched.search.pareto import front_indices

    front = np.zeros((1, 2))
    n = len(options)
    for i, plans in enumerate(options):
        step = np.array([[step_error(p, i, n), step_cost(p)] for p in plans])
        sums = (front[:, None, :] + step[None, :, :]).reshape(-1, 2)
        front = sums[front_indices(sums)]
    return front


EvaluatorSettings: TypeAlias = SyntheticSettings | PipelineSettings
"""The settings of an evaluator kind; ``kind`` (a class attribute) names it in the ``[evaluator]`` table."""

SETTINGS: dict[str, type[EvaluatorSettings]] = {cls.kind: cls for cls in (SyntheticSettings, PipelineSettings)}
"""Evaluator kinds a config can name, each with the settings its ``[evaluator]`` table holds."""


def evaluator_settings(table: Mapping[str, Any]) -> EvaluatorSettings:
    """The validated settings of an ``[evaluator]`` table (``kind`` defaults to ``pipeline``).

    Called once, when a search config is loaded, so unknown kinds and keys and bad values are
    refused before anything runs, not on a worker.
    """
    data = dict(table)
    kind = data.pop("kind", PipelineSettings.kind)
    if kind not in SETTINGS:
        raise ConfigError(f"unknown evaluator kind {kind!r}; valid: {', '.join(SETTINGS)}")
    cls = SETTINGS[kind]
    check_keys(data, ["kind", *(f.name for f in fields(cls))], f"[evaluator] of kind {kind!r}")
    return cls(**data)


def evaluator_table(settings: EvaluatorSettings) -> dict[str, Any]:
    """The ``[evaluator]`` table :func:`evaluator_settings` turns back into ``settings``: its kind and every field."""
    return {"kind": settings.kind, **asdict(settings)}


def build_evaluator(settings: EvaluatorSettings) -> Evaluator:
    """The evaluator ``settings`` describe; a pipeline evaluator loads its model here (on the worker that runs it)."""
    if isinstance(settings, SyntheticSettings):
        return SyntheticEvaluator(settings)
    from prunesched.evaluation.evaluate import PipelineEvaluator  # torch and diffusers: only where a pipeline runs

    return PipelineEvaluator(settings)


def evaluator_factory(settings: EvaluatorSettings) -> Callable[[], Evaluator]:
    """A picklable zero-argument factory that builds the evaluator ``settings`` describe on a worker."""
    return functools.partial(build_evaluator, settings)
