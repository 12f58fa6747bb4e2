"""The database schema: searches, their candidates, evaluations, generations and exports.

A candidate is one distinct schedule of a search (unique by its canonical hash), so a schedule
is evaluated at most once per search, ever: its one evaluation row carries the status, the
metrics and every attempt's count. Schema changes go through the Alembic migrations next to
this file, never through ``create_all``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Search(Base):
    """One search: its full configuration, seed and the code that ran it."""

    __tablename__ = "searches"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="running")  # running, finished, interrupted
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    objectives: Mapped[list[Any]] = mapped_column(JSON)
    reference_point: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    code_version: Mapped[str] = mapped_column(String(100))
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)  # host:pid of the coordinator running it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    candidates: Mapped[list[Candidate]] = relationship(back_populates="search", order_by="Candidate.id")
    generations: Mapped[list[Generation]] = relationship(back_populates="search", order_by="Generation.number")


class Candidate(Base):
    """A distinct schedule proposed in a search, in canonical JSON, with the genome it came from."""

    __tablename__ = "candidates"
    __table_args__ = (UniqueConstraint("search_id", "schedule_hash", name="uq_candidate_schedule"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id"), index=True)
    schedule_hash: Mapped[str] = mapped_column(String(64))
    schedule: Mapped[dict[str, Any]] = mapped_column(JSON)
    genome: Mapped[list[Any]] = mapped_column(JSON)
    generation_born: Mapped[int] = mapped_column(Integer)  # -1 for a baseline, evaluated before the first generation
    baseline: Mapped[str | None] = mapped_column(String(200), nullable=True)  # the hand-made schedule's name, if it is one
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    search: Mapped[Search] = relationship(back_populates="candidates")
    evaluation: Mapped[Evaluation | None] = relationship(back_populates="candidate", uselist=False)


class Evaluation(Base):
    """The evaluation of one candidate: status, metrics (with image counts and intervals), where and how long.

    ``objective_0``/``objective_1`` repeat the two search objectives of ``metrics`` as columns so
    fronts and filters are plain SQL. ``violation`` is how far a done evaluation breaks the search's
    guardrails (0: it keeps them; None: the search has none) and ``violation_reason`` says which;
    only evaluations that keep them can be on a front. ``validation`` is the candidate's second
    evaluation on more images and fresh seeds, once the search's last generation is stored (its
    ``metrics``, ``objectives``, ``violation`` and ``violation_reason``), for the final front and the baselines.
    ``screening`` is a searched candidate's first evaluation on fewer images (``metrics``, ``objectives``,
    ``attempts``) where the search screens (:mod:`prunesched.search.screening`); ``promoted`` says whether it then
    went on to the full evaluation (None: not screened, or not decided yet). A candidate left behind is done with
    its screening's values, and never stands on a front. ``confirmation`` says that a front point was evaluated again
    on more images during the search (:mod:`prunesched.search.confirmation`): the values that confirmation replaced
    (``unconfirmed``: metrics, objectives, violation, violation_reason) with the confirmation's ``worker`` and
    ``duration_s``, or the ``error`` of a confirmation that failed.
    """

    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), unique=True)
    status: Mapped[str] = mapped_column(String(20), index=True)  # queued, running, done, failed
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    objective_0: Mapped[float | None] = mapped_column(Float, nullable=True)
    objective_1: Mapped[float | None] = mapped_column(Float, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    device: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    violation: Mapped[float | None] = mapped_column(Float, nullable=True)
    violation_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    validation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    screening: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    promoted: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    confirmation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)

    candidate: Mapped[Candidate] = relationship(back_populates="evaluation")


class Generation(Base):
    """The state after a generation was told: its front, hypervolume and the algorithm snapshot.

    ``snapshot`` is the proposer's state as a JSON document (:mod:`prunesched.search.snapshot`),
    never a pickle, with its SHA-256 checked before it is read. Only the latest generation keeps
    it (a resume needs nothing older, and an Optuna snapshot grows with every trial).
    """

    __tablename__ = "generations"
    __table_args__ = (UniqueConstraint("search_id", "number", name="uq_generation_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    members: Mapped[list[Any]] = mapped_column(JSON)  # candidate ids proposed in this generation
    front: Mapped[list[Any]] = mapped_column(JSON)  # candidate ids on the front of everything evaluated so far
    hypervolume: Mapped[float | None] = mapped_column(Float, nullable=True)
    evaluations: Mapped[int] = mapped_column(Integer)  # finished evaluations of the search so far
    snapshot: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    snapshot_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    search: Mapped[Search] = relationship(back_populates="generations")


class Export(Base):
    """A schedule written to a file from a search, and how it was picked."""

    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id"), index=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"))
    pick: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
