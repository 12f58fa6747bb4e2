"""One search as a report sees it: every successful evaluation and every stored generation.

Built from the store's immutable records: a generation is the store's own
:class:`~prunesched.storage.records.FrozenGeneration`, and a :class:`Point` is a successful
candidate and its evaluation seen as (quality, cost).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from prunesched.search.review import BaselineComparison, baselines
from prunesched.storage.records import FrozenCandidate, FrozenEvaluation, FrozenGeneration

if TYPE_CHECKING:
    from prunesched.storage.store import Store


@dataclass(frozen=True)
class Point:
    """One successfully evaluated candidate: the generation it was born in, its two objectives, its schedule,
    the baseline it is (if it is one) and why it breaks the guardrails (if it does)."""

    candidate: int
    generation: int
    quality: float
    cost: float
    schedule: dict[str, Any]
    metrics: dict[str, Any]
    baseline: str | None = None
    refused: str | None = None

    @classmethod
    def of(cls, candidate: FrozenCandidate, evaluation: FrozenEvaluation) -> Point:
        """The point of a successfully evaluated candidate."""
        quality, cost = evaluation.objectives
        refused = None if evaluation.feasible else evaluation.violation_reason
        return cls(
            candidate.id,
            candidate.generation_born,
            quality,
            cost,
            candidate.schedule,
            evaluation.metrics or {},
            candidate.baseline,
            refused,
        )


@dataclass(frozen=True)
class SearchRecord:
    id: int
    name: str
    status: str
    objectives: tuple[str, str]
    config: dict[str, Any]
    points: tuple[Point, ...]
    generations: tuple[FrozenGeneration, ...]
    failed: int
    baselines: tuple[BaselineComparison, ...] = ()

    def front(self, generation: int | None = None) -> list[Point]:
        """The front after ``generation`` (default: the latest), sorted by quality; empty before the first generation."""
        if not self.generations:
            return []
        stored = self.generations[-1] if generation is None else next(g for g in self.generations if g.number == generation)
        return sorted((self._by_id[i] for i in stored.front), key=lambda p: (p.quality, p.cost))

    @cached_property
    def _by_id(self) -> dict[int, Point]:
        return {p.candidate: p for p in self.points}


def read_search(store: Store, search_id: int) -> SearchRecord:
    """Read search ``search_id`` whole; an unknown id is a :class:`prunesched.errors.ConfigError`."""
    search = store.search(search_id)
    # generations first: every front member was evaluated before its generation was stored, so
    # evaluations read after them include every front of a search that is still writing
    generations = tuple(store.generations(search_id))
    points = tuple(Point.of(c, e) for c, e in store.evaluations(search_id, status="done"))
    objectives = (str(search.objectives[0]), str(search.objectives[1]))
    failed = store.counts(search_id).failed
    return SearchRecord(
        search.id, search.name, search.status, objectives, search.config, points, generations, failed, tuple(baselines(store, search_id))
    )


def cache_summary(schedule: dict[str, Any]) -> str:
    """How many steps of a stored schedule compute in full, from a cached branch, and reuse: ``"full/branch/reuse"``."""
    caches = [s["cache"] for s in schedule["steps"]]
    return f"{caches.count('full')}/{sum(isinstance(c, int) for c in caches)}/{caches.count('reuse')}"


def mean_prune(schedule: dict[str, Any]) -> str:
    """The mean prune ratio over a stored schedule's steps, to three decimals."""
    return f"{sum(s['prune'] for s in schedule['steps']) / len(schedule['steps']):.3f}"
