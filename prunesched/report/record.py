"""One search as a report sees it: every successful evaluation and every stored generation.

Built from the store's immutable records: a generation is the store's own
:class:`~prunesched.storage.records.FrozenGeneration`, and a :class:`Point` is a successful
candidate and its evaluation seen as (quality, cost).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from prunesched.search.review import BaselineComparison, FrontPoint, baselines, validated_front
from prunesched.storage.records import FrozenCandidate, FrozenEvaluation, FrozenGeneration

if TYPE_CHECKING:
    from prunesched.storage.store import Store


@dataclass(frozen=True)
class Point:
    """One successfully evaluated candidate: the generation it was born in, its two objectives, its schedule,
    the baseline it is (if it is one), why it breaks the guardrails (if it does), and whether it was screened out
    (its values are from the screening's few images: :mod:`prunesched.search.screening`)."""

    candidate: int
    generation: int
    quality: float
    cost: float
    schedule: dict[str, Any]
    metrics: dict[str, Any]
    baseline: str | None = None
    refused: str | None = None
    screened_out: bool = False

    @classmethod
    def of(cls, candidate: FrozenCandidate, evaluation: FrozenEvaluation, validated: bool = False) -> Point:
        """The point of a successfully evaluated candidate, with its validation's values when ``validated``."""
        point = FrontPoint(candidate, evaluation, validated)
        quality, cost = point.objectives
        return cls(
            candidate.id,
            candidate.generation_born,
            quality,
            cost,
            candidate.schedule,
            dict(point.metrics),
            candidate.baseline,
            None if point.feasible else point.reason,
            evaluation.promoted is False,
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
    validated: tuple[Point, ...] = ()  # the final front and the baselines with their validation's values (more images)
    validated_front: tuple[Point, ...] = ()  # of them, the front :func:`prunesched.search.review.validated_front` gives

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
    rows = store.evaluations(search_id, status="done")
    points = tuple(Point.of(c, e) for c, e in rows)
    objectives = (str(search.objectives[0]), str(search.objectives[1]))
    validated = tuple(Point.of(c, e, validated=True) for c, e in rows if e.validation and FrontPoint(c, e, validated=True).measured)
    front = {p.candidate.id for p in validated_front(store, search_id)}
    return SearchRecord(
        search.id,
        search.name,
        search.status,
        objectives,
        search.config,
        points,
        generations,
        store.counts(search_id).failed,
        tuple(baselines(store, search_id)),
        validated,
        tuple(p for p in validated if p.candidate in front),
    )


def cache_summary(schedule: dict[str, Any]) -> str:
    """How many steps of a stored schedule compute in full, in part (a cache branch or block cache), and reuse:
    ``"full/partial/reuse"``."""
    caches = [s["cache"] for s in schedule["steps"]]
    full, reuse = caches.count("full"), caches.count("reuse")
    return f"{full}/{len(caches) - full - reuse}/{reuse}"


def mean_prune(schedule: dict[str, Any]) -> str:
    """The mean prune ratio over a stored schedule's steps, to three decimals."""
    return f"{sum(s['prune'] for s in schedule['steps']) / len(schedule['steps']):.3f}"
