"""What the store hands out and takes in: immutable values, never ORM rows (Optuna's ``FrozenTrial`` rule).

A record is a frozen dataclass read in one transaction; it does not load anything later and
does not write anything back. Its JSON fields (a search's config, a schedule, metrics, id lists)
are :class:`FrozenDict` and :class:`FrozenList`: read-only ``dict`` and ``list`` subclasses, so
they serialise as JSON and pass ``isinstance`` checks as they are, while a caller that wants to
change one takes a copy (``dict(record.config)``, :func:`thaw`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn


class FrozenDict(dict[str, Any]):
    """A ``dict`` that refuses every change."""

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("a stored record is read-only; take a copy (dict(...)) to change it")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[Any, ...]:  # pickle and copy rebuild it whole instead of item by item
        return (FrozenDict, (dict(self),))


class FrozenList(list[Any]):
    """A ``list`` that refuses every change."""

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("a stored record is read-only; take a copy (list(...)) to change it")

    __setitem__ = __delitem__ = __iadd__ = __imul__ = append = clear = extend = insert = pop = remove = reverse = sort = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenList, (list(self),))


def frozen(value: Any) -> Any:
    """A JSON value with every object and array made read-only."""
    if isinstance(value, dict):
        return FrozenDict({k: frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return FrozenList(frozen(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """A mutable deep copy of a (frozen) JSON value."""
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Counts:
    """A search's evaluations by state; ``active`` is queued plus running."""

    done: int = 0
    active: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.done + self.active + self.failed


@dataclass(frozen=True)
class FrozenSearch:
    """One search: its full configuration, seed and the code that ran it."""

    id: int
    name: str
    status: str  # running, finished, interrupted
    config: FrozenDict
    seed: int
    objectives: FrozenList
    reference_point: FrozenList | None
    code_version: str
    owner: str | None  # host:pid of the coordinator running it
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class FrozenCandidate:
    """A distinct schedule proposed in a search, in canonical JSON, with the genome it came from."""

    id: int
    search_id: int
    schedule_hash: str
    schedule: FrozenDict
    genome: FrozenList
    generation_born: int  # -1 for a baseline
    baseline: str | None  # the hand-made schedule's name, if it is one
    created_at: datetime


@dataclass(frozen=True)
class FrozenEvaluation:
    """The evaluation of one candidate: status, metrics, the two objectives, where and how long."""

    id: int
    candidate_id: int
    status: str  # queued, running, done, failed
    metrics: FrozenDict | None
    objective_0: float | None
    objective_1: float | None
    worker: str | None
    device: str | None
    attempts: int
    error: str | None
    violation: float | None  # how far the guardrails are broken: 0 kept, None none set
    violation_reason: str | None
    validation: FrozenDict | None  # the second evaluation on more images: metrics, objectives, violation, violation_reason
    screening: FrozenDict | None  # the first evaluation on fewer images: metrics, objectives, attempts
    promoted: bool | None  # whether the screening led to the full evaluation; None: not screened, or not decided yet
    confirmation: FrozenDict | None  # a front point's values before its confirmation replaced them (or its error); None: unconfirmed
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None

    @property
    def feasible(self) -> bool:
        """Done on all images and within the search's guardrails: what may stand on a front or be exported."""
        return self.status == "done" and self.excluded is None

    @property
    def excluded(self) -> str | None:
        """Why a done evaluation may not stand on a front: it breaks the guardrails, or it was screened out; else None."""
        if self.violation:
            return f"outside the guardrails: {self.violation_reason}"
        if self.promoted is False:
            n = max((m.get("n", 0) for m in (self.metrics or {}).values()), default=0)
            return f"screened out on {n} images: it could not reach the front"
        return None

    @property
    def objectives(self) -> tuple[float, float]:
        """Both objective values of a successful evaluation; a ``ValueError`` for any other."""
        if self.objective_0 is None or self.objective_1 is None:
            raise ValueError(f"evaluation of candidate {self.candidate_id} is {self.status}; it has no objective values")
        return (self.objective_0, self.objective_1)


@dataclass(frozen=True)
class FrozenGeneration:
    """A told generation: its members, the front of everything evaluated by then, its hypervolume.

    The proposer snapshot stored with it is read only through ``Store.latest_snapshot``.
    """

    search_id: int
    number: int
    members: FrozenList  # candidate ids proposed in this generation
    front: FrozenList  # candidate ids on the front of everything evaluated so far
    hypervolume: float | None
    evaluations: int  # finished evaluations of the search so far
    created_at: datetime


@dataclass(frozen=True)
class FrozenExport:
    """A schedule written to a file from a search, and how it was picked."""

    id: int
    search_id: int
    candidate_id: int
    pick: str
    path: str
    created_at: datetime


@dataclass(frozen=True)
class Outcome:
    """A finished evaluation as the store records it: checked metrics and objective values on success, the error on failure.

    Built by the dispatcher, which alone checks a worker's metrics (:func:`prunesched.storage.store.checked_metrics`),
    so that an unusable result can be retried there. It is defined here, not in the search
    package, because it is the input of :meth:`prunesched.storage.Store.record`, and storage
    does not import the search. An ``ok`` outcome must carry both (finite) objective values.
    """

    candidate_id: int
    ok: bool
    attempts: int
    metrics: dict[str, Any] | None = None
    objectives: Sequence[float] | None = None
    error: str | None = None
    worker: str | None = None
    device: str | None = None
    started_at: datetime | None = None
    duration_s: float | None = None
    violation: float | None = None
    violation_reason: str | None = None

    def __post_init__(self) -> None:
        values = self.objectives
        if self.ok and (self.metrics is None or values is None or len(values) != 2 or not all(math.isfinite(v) for v in values)):
            raise ValueError(f"a successful outcome of candidate {self.candidate_id} needs its metrics and two finite objective values")
