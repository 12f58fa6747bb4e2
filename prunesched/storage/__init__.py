"""SQLAlchemy models and the functions that read and write them: the only code that speaks SQL."""

from prunesched.storage.database import open_database
from prunesched.storage.store import Counts, Outcome, Store

__all__ = ["Counts", "Outcome", "Store", "open_database"]
