"""Opening a search database: any SQLAlchemy URL, SQLite tuned for one writer and many readers.

Every SQLite connection gets WAL journaling (readers never block the writer), a busy timeout
and foreign keys. The schema is created and upgraded only through the Alembic migrations in
``migrations/``. A file that is not a prunesched database, or one written by a newer
prunesched, is refused before anything is written to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from prunesched.errors import StorageError

BUSY_TIMEOUT_MS = 30_000
MIGRATIONS = Path(__file__).with_name("migrations")
SCHEMA_REVISION = "0004"
"""The schema revision this prunesched writes: the head of ``migrations/versions`` (a test checks
that they agree). Alembic itself is imported only to migrate, so reading a database stays quick."""

Mode = Literal["read", "write", "create"]
"""``read``: the database must exist at the current schema. ``write``: it must exist; an older
schema is migrated. ``create``: a missing or empty database is created, an older one migrated."""


def database_url(location: str | Path) -> str:
    """A SQLAlchemy URL for ``location``: a URL is kept, a file path becomes ``sqlite:///path``."""
    text = str(location)
    return text if "://" in text else f"sqlite:///{Path(text).expanduser()}"


def in_memory(location: str | Path) -> bool:
    """Whether ``location`` is an in-memory SQLite database (``:memory:``, ``sqlite://``), which keeps nothing once its process ends."""
    url = database_url(location)
    return url.startswith("sqlite") and (url.partition("://")[2] in ("", "/") or ":memory:" in url or "mode=memory" in url)


def sqlite_file(location: str | Path) -> Path | None:
    """The file of a SQLite database at ``location``; None for other databases and for in-memory SQLite."""
    url = database_url(location)
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") and not in_memory(url) else None


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def make_engine(location: str | Path, tuned: bool = True) -> Engine:
    """An engine for ``location``; ``tuned`` SQLite connections get the settings of the module docstring."""
    url = database_url(location)
    try:
        if not url.startswith("sqlite"):
            return create_engine(url, pool_pre_ping=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise StorageError(_unusable(exc)) from None
    if tuned:
        event.listen(engine, "connect", _tune_sqlite)
    return engine


def alembic_config(engine: Engine) -> Any:
    """Alembic's configuration for running the migrations on ``engine``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def current_revision(engine: Engine) -> str | None:
    """The schema revision stored in the database, or None for a database without our schema."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def open_database(location: str | Path, mode: Mode = "read") -> sessionmaker[Session]:
    """A session factory for the search database at ``location`` (a path or a SQLAlchemy URL); see :data:`Mode`.

    Only the search coordinator and ``prunesched db upgrade`` open with a mode other than ``read``.
    """
    url = database_url(location)
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError as exc:
        raise StorageError(_unusable(exc)) from None
    if mode != "read" and in_memory(url):
        raise StorageError(
            f"{shown} is an in-memory database, which keeps nothing once the command ends; pass a file path or a server URL with --db"
        )
    path = sqlite_file(location)
    if path is not None and mode != "create" and not path.is_file():
        raise StorageError(f"no database at {str(path)!r}; run 'prunesched search launch' first or pass --db PATH")
    revision, tables = _inspect(url, shown)  # on an untuned connection: nothing is written before the checks
    head = SCHEMA_REVISION
    if revision is None and tables:
        raise StorageError(f"{shown} has tables but no prunesched schema version; it is not a prunesched database")
    if revision not in (None, head) and not _known_revision(revision):
        raise StorageError(
            f"database schema {revision!r} was written by a newer prunesched (this one reads up to {head!r}); upgrade prunesched"
        )
    if revision is None and mode != "create":
        raise StorageError(f"{shown} is empty; run 'prunesched search launch' to start a search in it")
    engine = make_engine(url)
    if revision != head:
        if mode == "read":
            raise StorageError(
                f"database schema {revision!r} is older than this prunesched's {head!r}; run 'prunesched db upgrade --db ...'"
            )
        from alembic import command

        command.upgrade(alembic_config(engine), "head")
    return sessionmaker(engine, expire_on_commit=False)


def _inspect(url: str, shown: str) -> tuple[str | None, list[str]]:
    engine = make_engine(url, tuned=False)
    try:
        return current_revision(engine), inspect(engine).get_table_names()
    except OperationalError as exc:
        raise StorageError(f"cannot open {shown}: {exc.orig}") from None
    except DatabaseError as exc:
        raise StorageError(f"{shown} is not a prunesched database: {exc.orig}") from None
    finally:
        engine.dispose()


def _unusable(exc: Exception) -> str:
    return (
        f"the database location is not usable ({type(exc).__name__}: {exc}); "
        "pass a file path or a SQLAlchemy URL whose driver is installed, e.g. sqlite:///search.db"
    )


def _known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory(str(MIGRATIONS)).get_revision(revision) is not None
    except CommandError:
        return False
