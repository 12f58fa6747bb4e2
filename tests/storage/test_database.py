"""The database layer: migrations both ways, SQLite tuning on every connection, refusals that touch nothing."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from prunesched.errors import StorageError
from prunesched.storage import Counts, Store
from prunesched.storage.database import MIGRATIONS, SCHEMA_REVISION, alembic_config, current_revision, make_engine
from tests.storage.dump import database_dump

TABLES = {"searches", "candidates", "evaluations", "generations", "exports", "alembic_version"}


def test_migrations_upgrade_an_empty_database_to_head_and_back(tmp_path):
    assert ScriptDirectory(str(MIGRATIONS)).get_current_head() == SCHEMA_REVISION  # the constant readers check against
    engine = make_engine(tmp_path / "m.db")
    config = alembic_config(engine)
    command.upgrade(config, "head")
    assert set(inspect(engine).get_table_names()) == TABLES
    assert current_revision(engine) == SCHEMA_REVISION
    command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    assert current_revision(engine) is None
    command.upgrade(config, "head")
    assert current_revision(engine) == SCHEMA_REVISION


def test_every_connection_uses_wal_and_a_busy_timeout(tmp_path):
    store = Store(tmp_path / "w.db", mode="create")
    with store.sessions() as first, store.sessions() as second:  # two connections open at once
        for session in (first, second):
            assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert session.execute(text("PRAGMA busy_timeout")).scalar() >= 10_000
            assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert first.connection().connection.dbapi_connection is not second.connection().connection.dbapi_connection


def test_an_empty_database_is_refused_by_readers(tmp_path):
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    with pytest.raises(StorageError, match="is empty; run 'prunesched search launch'"):
        Store(path)


def test_a_missing_database_is_not_created_by_readers(tmp_path):
    with pytest.raises(StorageError, match="no database at"):
        Store(tmp_path / "absent.db")
    assert not (tmp_path / "absent.db").exists()


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the tables you are looking for" * 100)
    before = path.read_bytes()
    with pytest.raises(StorageError, match="not a prunesched database"):
        Store(path, mode="create")
    assert path.read_bytes() == before


def test_a_foreign_sqlite_database_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("CREATE TABLE things (id INTEGER)")
        connection.commit()
    before = database_dump(path)
    with pytest.raises(StorageError, match="no prunesched schema version"):
        Store(path, mode="create")
    assert database_dump(path) == before
    assert not path.with_name("other.db-wal").exists()  # not even switched to WAL
    with contextlib.closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_database_from_a_newer_prunesched_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "new.db"
    Store(path, mode="create")
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
        connection.commit()
    before = database_dump(path)
    with pytest.raises(StorageError, match="newer prunesched"):
        Store(path, mode="create")
    assert database_dump(path) == before


def test_an_unknown_search_id_names_the_known_ones(tmp_path):
    store = Store(tmp_path / "s.db", mode="create")
    store.create_search("a", {}, 0, ["x", "y"], "test")
    with pytest.raises(StorageError, match=r"no search with id 7; known ids: 1"):
        store.search(7)


def test_the_memo_returns_the_same_candidate_for_the_same_schedule(tmp_path):
    store = Store(tmp_path / "c.db", mode="create")
    search = store.create_search("a", {}, 0, ["x", "y"], "test")
    first = store.candidate(search, "h1", {"steps": []}, [0, 1], 0)
    again = store.candidate(search, "h1", {"steps": []}, [0, 1], 3)
    other = store.candidate(search, "h2", {"steps": []}, [1, 1], 3)
    assert first.id == again.id != other.id
    assert again.generation_born == 0
    assert store.counts(search) == Counts(active=2)


def test_only_the_latest_snapshot_is_kept_and_a_tampered_one_is_never_unpickled(tmp_path):
    path = tmp_path / "g.db"
    store = Store(path, mode="create")
    search = store.create_search("a", {}, 0, ["x", "y"], "test")
    store.save_generation(search, 0, [], [], None, b"first")
    store.save_generation(search, 1, [], [], None, b"second")
    with contextlib.closing(sqlite3.connect(path)) as connection:
        kept = connection.execute("SELECT number FROM generations WHERE snapshot IS NOT NULL").fetchall()
    assert kept == [(1,)]
    assert store.latest_snapshot(search) == b"second"
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("UPDATE generations SET snapshot = ? WHERE number = 1", (b"cos\nsystem\n(S'echo pwned'\ntR.",))
        connection.commit()
    with pytest.raises(StorageError, match="does not match its checksum"):
        store.latest_snapshot(search)
