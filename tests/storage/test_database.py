"""The database layer: migrations both ways, SQLite tuning on every connection, refusals that touch nothing."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import pickle
import sqlite3

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from prunesched.errors import StorageError
from prunesched.storage import Counts, Outcome, Store
from prunesched.storage.database import MIGRATIONS, SCHEMA_REVISION, alembic_config, current_revision, make_engine
from prunesched.storage.models import Base
from prunesched.storage.records import thaw
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
    first, _ = store.candidate(search, "h1", {"steps": []}, [0, 1], 0)
    again, evaluation = store.candidate(search, "h1", {"steps": []}, [0, 1], 3)
    other, _ = store.candidate(search, "h2", {"steps": []}, [1, 1], 3)
    assert first.id == again.id != other.id
    assert again.generation_born == 0
    assert evaluation.candidate_id == first.id and evaluation.status == "queued"
    assert store.counts(search) == Counts(active=2)


def test_the_store_hands_out_immutable_records_not_rows(tmp_path):
    """The contract of every read: frozen values, their JSON fields read-only, detached from any session."""
    store = Store(tmp_path / "r.db", mode="create")
    search = store.create_search("a", {"proposer": {"generations": 2}}, 0, ["x", "y"], "test", reference_point=[1.0, 2.0])
    candidate, _ = store.candidate(search, "h1", {"steps": [{"cache": "full", "prune": 0.0}]}, [0, 1], 0)
    metrics = {"x": {"value": 0.5, "n": 2, "ci": [0.4, 0.6]}, "y": {"value": 0.25, "n": 2, "ci": None}}
    store.record(Outcome(candidate.id, ok=True, attempts=1, metrics=metrics, objectives=[0.5, 0.25]))
    store.save_generation(search, 0, [candidate.id], [candidate.id], 0.1, b"{}")
    store.record_export(search, candidate.id, "best", "out.json")
    ((stored, evaluation),) = store.evaluations(search)
    records = [store.search(search), *store.searches(), stored, evaluation, store.generation(search), *store.generations(search)]
    records += [*store.candidates_by_id([candidate.id])[0], *store.exports(search)]
    for record in records:
        assert dataclasses.is_dataclass(record) and not isinstance(record, Base), type(record)
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.id = 7  # type: ignore[misc]
    assert evaluation.objectives == (0.5, 0.25) and evaluation.metrics == metrics
    frozen_json = [
        store.search(search).config,
        store.search(search).config["proposer"],
        store.search(search).objectives,
        store.search(search).reference_point,
        stored.schedule["steps"][0],
        stored.schedule["steps"],
        stored.genome,
        evaluation.metrics["x"]["ci"],
        store.generation(search).front,
    ]
    for value in frozen_json:
        with pytest.raises(TypeError, match="read-only"):
            value.clear()
    with pytest.raises(TypeError, match="read-only"):
        stored.schedule["steps"] = []
    assert json.loads(json.dumps(stored.schedule)) == {"steps": [{"cache": "full", "prune": 0.0}]}  # still plain JSON
    assert copy.deepcopy(stored) == stored and pickle.loads(pickle.dumps(stored.schedule)) == stored.schedule
    thawed = thaw(stored.schedule)
    thawed["steps"].append({})
    assert len(stored.schedule["steps"]) == 1


def test_a_successful_outcome_carries_checked_objective_values():
    with pytest.raises(ValueError, match="two finite objective values"):
        Outcome(1, ok=True, attempts=1, metrics={}, objectives=[float("nan"), 1.0])
    with pytest.raises(ValueError, match="two finite objective values"):
        Outcome(1, ok=True, attempts=1, metrics={})
    assert not Outcome(1, ok=False, attempts=2, error="boom").ok


def test_only_the_latest_snapshot_is_kept_and_a_tampered_one_is_refused(tmp_path):
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
