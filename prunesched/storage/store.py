"""Every read and write of a search database, one transaction per call.

The coordinator is the only writer; the CLI's review commands only read. Each write commits
before it returns, which is what makes "commit before tell" and "nothing lost on a crash" hold.
Reads return the immutable records of :mod:`prunesched.storage.records`; ORM rows never leave
this module.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from prunesched.errors import StorageError
from prunesched.storage.database import Mode, open_database, sqlite_file
from prunesched.storage.models import Base, Candidate, Evaluation, Export, Generation, Search, utcnow
from prunesched.storage.records import (
    Counts,
    FrozenCandidate,
    FrozenEvaluation,
    FrozenExport,
    FrozenGeneration,
    FrozenSearch,
    Outcome,
    frozen,
)

__all__ = ["BASELINE_GENERATION", "FINISHED", "Counts", "Outcome", "Store", "checked_metrics"]

FINISHED = ("done", "failed")
BASELINE_GENERATION = -1
"""The generation a baseline is born in: evaluated before the proposer's first."""

Record = TypeVar("Record")


def _record(row: Base, kind: type[Record]) -> Record:
    """The immutable record ``kind`` of an ORM row, its JSON fields made read-only."""
    return kind(**{f.name: frozen(getattr(row, f.name)) for f in fields(kind)})  # type: ignore[arg-type]


def _pair(candidate: Candidate, evaluation: Evaluation) -> tuple[FrozenCandidate, FrozenEvaluation]:
    return _record(candidate, FrozenCandidate), _record(evaluation, FrozenEvaluation)


def checked_metrics(metrics: Any, objectives: Sequence[str]) -> tuple[dict[str, Any], list[float]]:
    """``metrics`` as plain JSON (numpy numbers become floats, NaN and infinities None) and its objective values.

    An evaluation is only worth keeping when both are sound, so this raises ``ValueError``, naming
    the fault, for an objective that is missing or not finite and for a value that is not a number.
    It defines what the store can hold; the dispatcher runs it once on every result a worker
    returns (where a failure can still be retried) and hands the result on in an :class:`Outcome`.
    """
    values = []
    for name in objectives:
        try:
            values.append(float(metrics[name]["value"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"no numeric value for objective {name!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"objective values {values} are not finite")
    return json.loads(json.dumps(metrics, default=_number), parse_constant=lambda _: None), values


def _number(value: Any) -> float:
    if isinstance(value, numbers.Real):  # numpy scalars, which json cannot write
        return float(value)
    raise ValueError(f"a metric value of type {type(value).__name__} is not a number")


class Store:
    """A search database opened at a path or SQLAlchemy URL (see :func:`open_database`)."""

    def __init__(self, location: str | Path, mode: Mode = "read") -> None:
        self.sessions: sessionmaker[Session] = open_database(location, mode)
        self.file = sqlite_file(location)

    # -- searches ---------------------------------------------------------------------------------

    def create_search(
        self,
        name: str,
        config: dict[str, Any],
        seed: int,
        objectives: Sequence[str],
        code_version: str,
        reference_point: Sequence[float] | None = None,
        owner: str | None = None,
    ) -> int:
        with self.sessions.begin() as session:
            search = Search(
                name=name,
                config=config,
                seed=seed,
                objectives=list(objectives),
                code_version=code_version,
                owner=owner,
                reference_point=None if reference_point is None else [float(v) for v in reference_point],
            )
            session.add(search)
            session.flush()
            return search.id

    def search(self, search_id: int) -> FrozenSearch:
        with self.sessions() as session:
            search = session.get(Search, search_id)
            if search is None:
                known = session.scalars(select(Search.id).order_by(Search.id)).all()
                raise StorageError(f"no search with id {search_id}; known ids: {', '.join(map(str, known)) or 'none'}")
            return _record(search, FrozenSearch)

    def searches(self) -> list[FrozenSearch]:
        with self.sessions() as session:
            return [_record(s, FrozenSearch) for s in session.scalars(select(Search).order_by(Search.id))]

    def set_status(self, search_id: int, status: str, owner: str | None = None) -> None:
        """Set a search's status and the coordinator that owns it (None: no owner)."""
        with self.sessions.begin() as session:
            search = session.get_one(Search, search_id)
            search.status, search.owner = status, owner

    def claim(self, seen: FrozenSearch, owner: str) -> bool:
        """Make ``owner`` the running coordinator of the search ``seen``, if its status and owner are still those of ``seen``.

        One conditional UPDATE, so taking ownership is atomic in the database: of several
        coordinators that read the same state and checked it, exactly one gets True; the others
        get False and must not touch the search.
        """
        query = (
            update(Search)
            .where(Search.id == seen.id, Search.status == seen.status, Search.owner.is_not_distinct_from(seen.owner))
            .values(status="running", owner=owner)
        )
        with self.sessions.begin() as session:
            return session.execute(query).rowcount == 1  # type: ignore[attr-defined]

    def release(self, search_id: int, owner: str, status: str) -> None:
        """Leave a search with ``status`` and no owner, only if ``owner`` still owns it (another may have taken it over)."""
        query = update(Search).where(Search.id == search_id, Search.owner == owner).values(status=status, owner=None)
        with self.sessions.begin() as session:
            session.execute(query)

    def set_reference_point(self, search_id: int, point: Sequence[float]) -> None:
        with self.sessions.begin() as session:
            session.get_one(Search, search_id).reference_point = [float(v) for v in point]

    # -- candidates and evaluations ----------------------------------------------------------------

    def candidate(
        self,
        search_id: int,
        schedule_hash: str,
        schedule: dict[str, Any],
        genome: Sequence[int],
        generation: int,
        baseline: str | None = None,
    ) -> tuple[FrozenCandidate, FrozenEvaluation]:
        """The search's candidate for this schedule and its evaluation, created queued if the schedule is new (the memo).

        ``baseline`` names a hand-made schedule; a candidate the proposer reached first takes the name too.
        """
        with self.sessions.begin() as session:
            found = session.scalar(select(Candidate).where(Candidate.search_id == search_id, Candidate.schedule_hash == schedule_hash))
            if found is None:
                found = Candidate(
                    search_id=search_id,
                    schedule_hash=schedule_hash,
                    schedule=schedule,
                    genome=list(genome),
                    generation_born=generation,
                    baseline=baseline,
                )
                found.evaluation = Evaluation(status="queued")
                session.add(found)
                session.flush()
            elif baseline is not None and found.baseline is None:
                found.baseline = baseline
            session.refresh(found, ["evaluation"])
            assert found.evaluation is not None  # every candidate is created with its evaluation
            return _pair(found, found.evaluation)

    def mark_running(self, candidate_id: int, worker: str, attempts: int) -> None:
        with self.sessions.begin() as session:
            evaluation = self._evaluation(session, candidate_id)
            evaluation.status, evaluation.worker, evaluation.attempts = "running", worker, attempts
            evaluation.started_at = utcnow()

    def record(self, outcome: Outcome) -> None:
        """Commit a finished evaluation (its metrics were checked by whoever built the :class:`Outcome`)."""
        with self.sessions.begin() as session:
            evaluation = self._evaluation(session, outcome.candidate_id)
            evaluation.status = "done" if outcome.ok else "failed"
            evaluation.metrics = dict(outcome.metrics) if outcome.ok and outcome.metrics is not None else None
            values = [float(v) for v in outcome.objectives] if outcome.ok and outcome.objectives is not None else [None, None]
            evaluation.objective_0, evaluation.objective_1 = values
            evaluation.error = outcome.error
            evaluation.violation, evaluation.violation_reason = outcome.violation, outcome.violation_reason
            evaluation.attempts = outcome.attempts
            evaluation.worker = outcome.worker or evaluation.worker
            evaluation.device = outcome.device
            evaluation.started_at = outcome.started_at or evaluation.started_at
            evaluation.finished_at = utcnow()
            evaluation.duration_s = outcome.duration_s

    def record_validation(self, outcome: Outcome) -> None:
        """Commit a candidate's validation, its second evaluation on more images: the metrics, objective values and
        guardrail violation of a success, the error of a failure (which is not tried again)."""
        validation: dict[str, Any] = {"error": outcome.error}
        if outcome.ok and outcome.metrics is not None and outcome.objectives is not None:
            validation = {
                "metrics": dict(outcome.metrics),
                "objectives": [float(v) for v in outcome.objectives],
                "violation": outcome.violation,
                "violation_reason": outcome.violation_reason,
            }
        with self.sessions.begin() as session:
            self._evaluation(session, outcome.candidate_id).validation = validation

    def record_confirmation(self, outcome: Outcome) -> None:
        """Commit a front point's confirmation on more images: a success replaces its metrics, objective values and
        guardrail violation and keeps the replaced ones; a failure keeps them and records the error (not tried again)."""
        with self.sessions.begin() as session:
            evaluation = self._evaluation(session, outcome.candidate_id)
            if not outcome.ok or outcome.metrics is None or outcome.objectives is None:
                evaluation.confirmation = {"error": outcome.error}
                return
            evaluation.confirmation = {
                "unconfirmed": {
                    "metrics": evaluation.metrics,
                    "objectives": [evaluation.objective_0, evaluation.objective_1],
                    "violation": evaluation.violation,
                    "violation_reason": evaluation.violation_reason,
                },
                "worker": outcome.worker,
                "duration_s": outcome.duration_s,
            }
            evaluation.metrics = dict(outcome.metrics)
            evaluation.objective_0, evaluation.objective_1 = (float(v) for v in outcome.objectives)
            evaluation.violation, evaluation.violation_reason = outcome.violation, outcome.violation_reason

    def record_screening(self, outcome: Outcome) -> None:
        """Commit a candidate's screening, its first evaluation on fewer images: a success leaves it queued for the
        promotion decision (:meth:`promote`) with its attempts counted afresh; a failure fails the candidate."""
        if not outcome.ok or outcome.metrics is None or outcome.objectives is None:
            self.record(outcome)
            return
        with self.sessions.begin() as session:
            evaluation = self._evaluation(session, outcome.candidate_id)
            evaluation.screening = {
                "metrics": dict(outcome.metrics),
                "objectives": [float(v) for v in outcome.objectives],
                "attempts": outcome.attempts,
                "worker": outcome.worker,
                "device": outcome.device,
                "duration_s": outcome.duration_s,
            }
            evaluation.status, evaluation.attempts = "queued", 0

    def promote(self, candidate_id: int, promoted: bool) -> None:
        """Settle a screened candidate: promoted to the full evaluation, or done with its screening's values."""
        with self.sessions.begin() as session:
            evaluation = self._evaluation(session, candidate_id)
            if evaluation.screening is None:
                raise StorageError(f"candidate {candidate_id} has no screening to settle")
            evaluation.promoted = promoted
            if not promoted:
                evaluation.status = "done"
                evaluation.metrics = evaluation.screening["metrics"]
                evaluation.objective_0, evaluation.objective_1 = evaluation.screening["objectives"]
                for name in ("attempts", "worker", "device", "duration_s"):
                    setattr(evaluation, name, evaluation.screening[name])
                evaluation.finished_at = utcnow()

    def evaluations(
        self,
        search_id: int | None = None,
        status: str | None = None,
        generation: int | None = None,
        limit: int | None = None,
        candidate_id: int | None = None,
    ) -> list[tuple[FrozenCandidate, FrozenEvaluation]]:
        """Candidates with their evaluations, oldest first, filtered as asked."""
        query = select(Candidate, Evaluation).join(Evaluation).order_by(Candidate.id)
        if candidate_id is not None:
            query = query.where(Candidate.id == candidate_id)
        if search_id is not None:
            query = query.where(Candidate.search_id == search_id)
        if status is not None:
            query = query.where(Evaluation.status == status)
        if generation is not None:
            query = query.where(Candidate.generation_born == generation)
        if limit is not None:
            query = query.limit(limit)
        with self.sessions() as session:
            return [_pair(c, e) for c, e in session.execute(query)]

    def done_objectives(self, search_id: int) -> list[tuple[int, float, float]]:
        """``(candidate id, objective 0, objective 1)`` of every successful evaluation on all images within the guardrails,
        oldest first: all a front needs."""
        query = (
            select(Candidate.id, Evaluation.objective_0, Evaluation.objective_1)
            .join(Evaluation)
            .where(Candidate.search_id == search_id, Evaluation.status == "done")
            .where((Evaluation.violation.is_(None)) | (Evaluation.violation == 0))
            .where(Evaluation.promoted.is_not(False))
            .order_by(Candidate.id)
        )
        with self.sessions() as session:
            return [(i, first, second) for i, first, second in session.execute(query) if first is not None and second is not None]

    def counts(self, search_id: int) -> Counts:
        """Evaluations of a search by state."""
        query = select(Evaluation.status, func.count()).join(Candidate).where(Candidate.search_id == search_id).group_by(Evaluation.status)
        with self.sessions() as session:
            by_status = {status: n for status, n in session.execute(query)}
        return Counts(
            done=by_status.get("done", 0),
            active=by_status.get("queued", 0) + by_status.get("running", 0),
            failed=by_status.get("failed", 0),
        )

    def candidates_by_id(self, ids: Sequence[int]) -> list[tuple[FrozenCandidate, FrozenEvaluation]]:
        """The candidates ``ids`` with their evaluations, in the order of ``ids``."""
        with self.sessions() as session:
            query = select(Candidate, Evaluation).join(Evaluation).where(Candidate.id.in_(ids))
            rows = {c.id: _pair(c, e) for c, e in session.execute(query)}
        return [rows[i] for i in ids]

    # -- generations ----------------------------------------------------------------------------------

    def save_generation(
        self, search_id: int, number: int, members: Sequence[int], front: Sequence[int], hypervolume: float | None, snapshot: bytes
    ) -> None:
        """Store a told generation and the proposer snapshot in one transaction: all of it or none.

        The previous generation's snapshot is dropped in the same transaction.
        """
        with self.sessions.begin() as session:
            session.execute(
                update(Generation)
                .where(Generation.search_id == search_id, Generation.snapshot_sha256.is_not(None))
                .values(snapshot=None, snapshot_sha256=None)
            )
            done = session.scalar(
                select(func.count())
                .select_from(Evaluation)
                .join(Candidate)
                .where(Candidate.search_id == search_id, Evaluation.status.in_(FINISHED))
            )
            session.add(
                Generation(
                    search_id=search_id,
                    number=number,
                    members=list(members),
                    front=list(front),
                    hypervolume=hypervolume,
                    evaluations=done or 0,
                    snapshot=snapshot,
                    snapshot_sha256=hashlib.sha256(snapshot).hexdigest(),
                )
            )

    def latest_snapshot(self, search_id: int) -> bytes | None:
        """The latest generation's proposer snapshot (JSON bytes), checked against its SHA-256 (None before the first generation)."""
        query = select(Generation.number, Generation.snapshot, Generation.snapshot_sha256).where(Generation.search_id == search_id)
        with self.sessions() as session:
            row = session.execute(query.order_by(Generation.number.desc()).limit(1)).first()
        if row is None:
            return None
        number, snapshot, checksum = row
        if snapshot is None or hashlib.sha256(snapshot).hexdigest() != checksum:
            raise StorageError(
                f"the algorithm snapshot of generation {number} is missing or does not match its checksum; refusing to load it"
            )
        return snapshot

    def generations(self, search_id: int) -> list[FrozenGeneration]:
        query = select(Generation).where(Generation.search_id == search_id).order_by(Generation.number)
        with self.sessions() as session:
            return [_record(g, FrozenGeneration) for g in session.scalars(query)]

    def generation(self, search_id: int, number: int | None = None) -> FrozenGeneration | None:
        """Generation ``number`` of a search, or its latest when ``number`` is None (None if it has none)."""
        query = select(Generation).where(Generation.search_id == search_id)
        query = query.where(Generation.number == number) if number is not None else query.order_by(Generation.number.desc()).limit(1)
        with self.sessions() as session:
            found = session.scalar(query)
            return None if found is None else _record(found, FrozenGeneration)

    # -- exports ----------------------------------------------------------------------------------------

    def record_export(self, search_id: int, candidate_id: int, pick: str, path: str) -> None:
        with self.sessions.begin() as session:
            session.add(Export(search_id=search_id, candidate_id=candidate_id, pick=pick, path=path))

    def exports(self, search_id: int) -> list[FrozenExport]:
        query = select(Export).where(Export.search_id == search_id).order_by(Export.id)
        with self.sessions() as session:
            return [_record(e, FrozenExport) for e in session.scalars(query)]

    @staticmethod
    def _evaluation(session: Session, candidate_id: int) -> Evaluation:
        return session.scalars(select(Evaluation).where(Evaluation.candidate_id == candidate_id)).one()
