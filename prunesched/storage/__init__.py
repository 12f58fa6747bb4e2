"""SQLAlchemy models and the functions that read and write them: the only code that speaks SQL."""

from prunesched.storage.database import open_database
from prunesched.storage.store import Outcome, Store, verified_snapshot

__all__ = ["Outcome", "Store", "open_database", "verified_snapshot"]
