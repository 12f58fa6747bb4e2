"""SQLAlchemy models and the functions that read and write them: the only code that speaks SQL.

:class:`Store` hands out the immutable records of :mod:`prunesched.storage.records`, never ORM rows.
"""

from prunesched.storage.database import open_database
from prunesched.storage.records import (
    Counts,
    FrozenCandidate,
    FrozenEvaluation,
    FrozenExport,
    FrozenGeneration,
    FrozenSearch,
    Outcome,
)
from prunesched.storage.store import Store

__all__ = [
    "Counts",
    "FrozenCandidate",
    "FrozenEvaluation",
    "FrozenExport",
    "FrozenGeneration",
    "FrozenSearch",
    "Outcome",
    "Store",
    "open_database",
]
