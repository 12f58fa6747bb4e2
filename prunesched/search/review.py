"""Reading a search back: its front at any generation, one point picked from it, and exported schedules.

Exports carry their provenance (search, candidate, generation, metrics, evaluator, versions) in
the schedule document itself; the schedule part is exactly what was evaluated, so it applies
with :func:`prunesched.apply` unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from prunesched.errors import ConfigError
from prunesched.runtime.schedule import Schedule
from prunesched.search.pareto import pick_weighted
from prunesched.storage.outputs import check_output, write_output
from prunesched.storage.records import FrozenCandidate, FrozenEvaluation
from prunesched.storage.store import Store

PICKS = ("weighted", "fastest", "best")
"""``weighted``: smallest quality + weight * cost (DaTo's Algorithm 1 score); ``fastest``: lowest
cost; ``best``: lowest quality loss. All pick from the front."""


@dataclass(frozen=True)
class FrontPoint:
    """A successfully evaluated candidate, as the store's immutable records."""

    candidate: FrozenCandidate
    evaluation: FrozenEvaluation

    @property
    def objectives(self) -> tuple[float, float]:
        return self.evaluation.objectives


def front(store: Store, search_id: int, generation: int | None = None) -> tuple[int, list[FrontPoint]]:
    """The front after ``generation`` (default: the latest) as (generation number, points sorted by quality)."""
    store.search(search_id)  # an unknown id is a clear error
    stored = store.generation(search_id, generation)
    if stored is None:
        known = [g.number for g in store.generations(search_id)]
        if generation is None:
            raise ConfigError(f"search {search_id} has no finished generation yet")
        raise ConfigError(f"search {search_id} has no generation {generation}; stored: {_ranges(known)}")
    return stored.number, [FrontPoint(c, e) for c, e in store.candidates_by_id(stored.front)]


def pick(points: list[FrontPoint], how: str = "weighted", weight: float = 1.0) -> FrontPoint:
    """One point of a front, chosen as :data:`PICKS` says."""
    if how not in PICKS:
        raise ConfigError(f"unknown pick {how!r}; valid: {', '.join(PICKS)}")
    if not points:
        raise ConfigError("the front is empty: no evaluation of this search has succeeded")
    objectives = [p.objectives for p in points]
    if how == "weighted":
        if not (math.isfinite(weight) and weight >= 0):
            raise ConfigError(f"the weight of cost against quality must be a finite number >= 0, got {weight!r}")
        return points[pick_weighted(objectives, weight)]
    axis = 1 if how == "fastest" else 0
    return min(points, key=lambda p: (p.objectives[axis], p.objectives[1 - axis]))


def export(
    store: Store,
    search_id: int,
    path: str | Path,
    how: str = "weighted",
    weight: float = 1.0,
    candidate_id: int | None = None,
    generation: int | None = None,
) -> Schedule:
    """Write one schedule of a search to ``path`` with its provenance, and record the export.

    ``candidate_id`` exports that candidate (any successfully evaluated one); otherwise ``how``
    picks from the front after ``generation``. ``path`` must be a new name or a regular file other
    than the database's (:func:`~prunesched.storage.outputs.check_output`); it is written all or nothing.
    """
    search = store.search(search_id)
    check_output(path, store.file)
    if candidate_id is not None:
        rows = store.evaluations(search_id, candidate_id=candidate_id)
        if not rows:
            raise ConfigError(f"search {search_id} has no candidate {candidate_id}")
        if rows[0][1].status != "done":
            raise ConfigError(
                f"candidate {candidate_id} is {rows[0][1].status}; only candidates evaluated successfully ('done') can be exported"
            )
        chosen, description = FrontPoint(*rows[0]), f"candidate {candidate_id}"
        number = None
    else:
        number, points = front(store, search_id, generation)
        chosen = pick(points, how, weight)
        description = f"weighted w={weight:g}" if how == "weighted" else how
    candidate, evaluation = chosen.candidate, chosen.evaluation
    provenance: dict[str, Any] = {
        "search": search_id,
        "search_name": search.name,
        "candidate": candidate.id,
        "generation_born": candidate.generation_born,
        "front_generation": number,
        "pick": description,
        "objectives": dict(zip(search.objectives, [evaluation.objective_0, evaluation.objective_1])),
        "metrics": evaluation.metrics,
        "status": evaluation.status,
        "evaluator": search.config["evaluator"],
        "seed": search.seed,
        "prunesched": version("prunesched"),
    }
    schedule = Schedule.from_dict(candidate.schedule).with_provenance(**provenance)
    write_output(path, (schedule.to_json() + "\n").encode("utf-8"), store.file)
    store.record_export(search_id, candidate.id, description, str(path))
    return schedule


def _ranges(numbers: list[int]) -> str:
    return f"{numbers[0]}..{numbers[-1]}" if numbers else "none"
