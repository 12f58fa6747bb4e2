"""Opening a search database: any SQLAlchemy URL, SQLite tuned for one writer and many readers.

Every SQLite connection gets WAL journaling (readers never block the writer), a busy timeout
and foreign keys. The schema is created and upgraded only through the Alembic migrations in
``migrations/``; a database written by a newer prunesched is refused, never touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, sessionmaker

from prunesched.errors import StorageError

BUSY_TIMEOUT_MS = 30_000
MIGRATIONS = Path(__file__).with_name("migrations")


def database_url(location: str | Path) -> str:
    """A SQLAlchemy URL for ``location``: a URL is kept, a file path becomes ``sqlite:///path``."""
    text = str(location)
    return text if "://" in text else f"sqlite:///{Path(text).expanduser()}"


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def make_engine(location: str | Path) -> Engine:
    """An engine whose every connection is tuned as the module docstring says (SQLite only)."""
    url = database_url(location)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _tune_sqlite)
        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    """The schema revision this version of prunesched writes."""
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema revision stored in the database, or None for an empty database."""
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except DatabaseError as exc:
        raise StorageError(f"{engine.url.render_as_string(hide_password=True)} is not a prunesched database: {exc.orig}") from None


def open_database(location: str | Path, create: bool = False) -> sessionmaker[Session]:
    """A session factory for the search database at ``location`` (a path or a SQLAlchemy URL).

    With ``create=True`` a missing or empty database is created and an older schema is
    upgraded; otherwise the database must exist at the current schema. Only the search
    coordinator opens with ``create=True``.
    """
    url = database_url(location)
    if url.startswith("sqlite:///") and not create:
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise StorageError(f"no database at {str(path)!r}; run 'prunesched search launch' first or pass --db PATH")
    engine = make_engine(url)
    revision = current_revision(engine)
    head = head_revision()
    if revision is None and inspect(engine).get_table_names():
        raise StorageError(f"{url} has tables but no prunesched schema version; it is not a prunesched database")
    if revision is not None and not _known_revision(revision):
        raise StorageError(
            f"database schema {revision!r} was written by a newer prunesched; this version reads up to {head!r}; upgrade prunesched"
        )
    if revision != head:
        if not create:
            raise StorageError(f"database schema is {revision!r}, expected {head!r}; run 'prunesched db upgrade' to migrate it")
        command.upgrade(alembic_config(engine), "head")
    return sessionmaker(engine, expire_on_commit=False)


def _known_revision(revision: str) -> bool:
    try:
        return ScriptDirectory(str(MIGRATIONS)).get_revision(revision) is not None
    except CommandError:
        return False
