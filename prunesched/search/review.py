"""Reading a search back: its front at any generation, one point picked from it, and exported schedules.

Exports carry their provenance (search, candidate, generation, metrics, evaluator, versions) in
the schedule document itself; the schedule part is exactly what was evaluated, so it applies
with :func:`prunesched.apply` unchanged. An export in another tool's format
(:mod:`~prunesched.runtime.interop`) carries that document beside the tool's config.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from prunesched.errors import ConfigError
from prunesched.runtime.interop import export_text
from prunesched.runtime.schedule import Schedule
from prunesched.search.pareto import front_indices, pick_weighted
from prunesched.storage.outputs import check_output, write_output
from prunesched.storage.records import FrozenCandidate, FrozenEvaluation
from prunesched.storage.store import Store

PICKS = ("weighted", "fastest", "best")
"""``weighted``: smallest quality + weight * cost (DaTo's Algorithm 1 score); ``fastest``: lowest
cost; ``best``: lowest quality loss. All pick from the front."""


@dataclass(frozen=True)
class FrontPoint:
    """A successfully evaluated candidate, as the store's immutable records; ``validated`` reads its validation's values."""

    candidate: FrozenCandidate
    evaluation: FrozenEvaluation
    validated: bool = False

    @property
    def _validation(self) -> Mapping[str, Any]:
        return self.evaluation.validation or {}

    @property
    def measured(self) -> bool:
        """Whether it has values to show: always as evaluated, and as validated unless the validation failed."""
        return not self.validated or "objectives" in self._validation

    @property
    def metrics(self) -> Mapping[str, Any]:
        """The metrics of the evaluation, or of the validation when ``validated``."""
        metrics = self._validation.get("metrics") if self.validated else self.evaluation.metrics
        return metrics or {}

    @property
    def feasible(self) -> bool:
        """Within the guardrails, as evaluated or as validated."""
        if self.validated:
            return self.measured and not self._validation.get("violation")
        return self.evaluation.feasible

    @property
    def reason(self) -> str | None:
        """Why it breaks the guardrails, as evaluated or as validated (None: it keeps them)."""
        return self._validation.get("violation_reason") if self.validated else self.evaluation.violation_reason

    @property
    def objectives(self) -> tuple[float, float]:
        if self.validated:
            first, second = self._validation["objectives"]
            return (float(first), float(second))
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


def validated_front(store: Store, search_id: int) -> list[FrontPoint]:
    """The front of the validated points (the final front and the baselines, on more images) that keep the guardrails
    both as searched and as validated, sorted by quality; empty before the search's validation."""
    store.search(search_id)
    validated = [FrontPoint(c, e, validated=True) for c, e in store.evaluations(search_id, status="done") if e.validation is not None]
    points = [p for p in validated if p.feasible and p.evaluation.feasible]
    return [points[i] for i in front_indices([p.objectives for p in points])]


def latency_agreement(points: Sequence[FrontPoint]) -> tuple[float, float, int] | None:
    """How the cost model's predicted relative latency agrees with the measured one on ``points``: Spearman's rank
    correlation, the median of measured over predicted, and the number of points (None where fewer than 3 have both)."""
    from scipy.stats import spearmanr

    pairs = [
        (p.metrics["relative_latency"]["value"], p.metrics["predicted_relative_latency"]["value"])
        for p in points
        if "relative_latency" in p.metrics and "predicted_relative_latency" in p.metrics
    ]
    if len(pairs) < 3:
        return None
    measured, predicted = zip(*pairs)
    ratio = float(np.median([m / q for m, q in pairs]))
    return float(spearmanr(measured, predicted).statistic), ratio, len(pairs)


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
    format: str = "prunesched",
) -> Schedule:
    """Write one schedule of a search to ``path`` with its provenance, in ``format`` (:data:`~prunesched.runtime.interop.FORMATS`),
    and record the export.

    ``candidate_id`` exports that candidate (any successfully evaluated one within the guardrails); otherwise ``how``
    picks from the validated front (:func:`validated_front`) once the search has one, else (and always with
    ``generation``) from the front after ``generation``. ``path`` must be a new name or a regular file other
    than the database's (:func:`~prunesched.storage.outputs.check_output`); it is written all or nothing.
    """
    search = store.search(search_id)
    check_output(path, store.file)
    if candidate_id is not None:
        rows = store.evaluations(search_id, candidate_id=candidate_id)
        if not rows:
            raise ConfigError(f"search {search_id} has no candidate {candidate_id}")
        evaluation = rows[0][1]
        if evaluation.status != "done":
            raise ConfigError(
                f"candidate {candidate_id} is {evaluation.status}; only candidates evaluated successfully ('done') can be exported"
            )
        if not evaluation.feasible:
            raise ConfigError(
                f"candidate {candidate_id} is {evaluation.excluded}; only candidates evaluated on all images within the "
                "guardrails can be exported"
            )
        chosen, description = FrontPoint(*rows[0]), f"candidate {candidate_id}"
        number = None
    else:
        validated = validated_front(store, search_id) if generation is None else []
        number, points = (None, validated) if validated else front(store, search_id, generation)
        chosen = pick(points, how, weight)
        description = (f"weighted w={weight:g}" if how == "weighted" else how) + (" of the validated front" if validated else "")
    candidate, evaluation = chosen.candidate, chosen.evaluation
    provenance: dict[str, Any] = {
        "search": search_id,
        "search_name": search.name,
        "candidate": candidate.id,
        "generation_born": candidate.generation_born,
        "baseline": candidate.baseline,
        "front_generation": number,
        "pick": description,
        "objectives": dict(zip(search.objectives, [evaluation.objective_0, evaluation.objective_1])),
        "metrics": evaluation.metrics,
        "validation": evaluation.validation,
        "status": evaluation.status,
        "evaluator": search.config["evaluator"],
        "seed": search.seed,
        "prunesched": version("prunesched"),
    }
    schedule = Schedule.from_dict(candidate.schedule).with_provenance(**provenance)
    write_output(path, export_text(schedule, format).encode("utf-8"), store.file)
    store.record_export(search_id, candidate.id, description if format == "prunesched" else f"{description}, as {format}", str(path))
    return schedule


@dataclass(frozen=True)
class BaselineComparison:
    """One baseline beside the search's own points (see :func:`baselines`).

    ``nearest`` is the searched point of best quality at equal or lower cost (None if there is none),
    ``difference`` its quality objective minus the baseline's (negative: the search is better), and
    ``dominated`` whether some searched point costs no more and is better beyond both quality
    intervals (its upper 95 % bound below the baseline's lower one).
    """

    name: str
    baseline: FrontPoint
    nearest: FrontPoint | None
    difference: float | None
    dominated: bool


def baselines(store: Store, search_id: int) -> list[BaselineComparison]:
    """Every evaluated baseline of a search, each compared with the points the search found within its guardrails:
    on the validation's values once the search is validated (the baselines and the final front), else on the search's."""
    search = store.search(search_id)
    rows = store.evaluations(search_id, status="done")
    validated = any(e.validation is not None for c, e in rows if c.baseline is not None)
    done = [point for c, e in rows if (point := FrontPoint(c, e, validated)).measured]
    searched = [p for p in done if p.candidate.baseline is None and p.feasible]
    quality = str(search.objectives[0])
    out = []
    for point in (p for p in done if p.candidate.baseline is not None):
        cheaper = [p for p in searched if p.objectives[1] <= point.objectives[1]]
        nearest = min(cheaper, key=lambda p: p.objectives, default=None)
        low = _bounds(point, quality)[0]
        out.append(
            BaselineComparison(
                name=point.candidate.baseline or "",
                baseline=point,
                nearest=nearest,
                difference=None if nearest is None else nearest.objectives[0] - point.objectives[0],
                dominated=any(_bounds(p, quality)[1] < low for p in cheaper),
            )
        )
    return out


def _bounds(point: FrontPoint, name: str) -> tuple[float, float]:
    """The 95 % interval of a point's metric ``name``, or its value twice where it has none."""
    measured = point.metrics.get(name) or {}
    ci = measured.get("ci")
    value = float(measured.get("value", math.nan))
    return (float(ci[0]), float(ci[1])) if ci else (value, value)


def _ranges(numbers: list[int]) -> str:
    return f"{numbers[0]}..{numbers[-1]}" if numbers else "none"
