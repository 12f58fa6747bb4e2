"""A full disk, under the search database or under an output file: one line, nothing stored lost, the search resumes.

A tmpfs cannot be mounted here, so the disk fills in two real-enough ways. Under the database:
``PRAGMA max_page_count`` on every pooled connection makes SQLite itself refuse to grow the
database with SQLITE_FULL, "database or disk is full", the same error a full disk gives, raised
by the real driver inside a real search run through the CLI. Under an output file: the shared
writer's partial file is opened on ``/dev/full``, whose every write fails with the kernel's ENOSPC.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing

import pytest
from click.testing import CliRunner
from sqlalchemy import event
from sqlalchemy.pool import Pool

from prunesched.cli import main
from prunesched.storage import Store

pytestmark = pytest.mark.usefixtures("ray_local")

CONFIG = '[space]\nkind = "dato"\nsteps = 6\n[evaluator]\nkind = "synthetic"\n[proposer]\npopulation = 6\ngenerations = 4\n'
FULL = "error: the disk is full (database or disk is full); everything stored before it is kept"


@pytest.fixture
def database_cap() -> Iterator[dict[str, int]]:
    """``cap["pages"] = n`` caps every connection the pools hand out at n database pages; 0 (the start) leaves them free."""
    cap = {"pages": 0}

    def on_checkout(connection: sqlite3.Connection, _record: object, _proxy: object) -> None:
        if cap["pages"] and isinstance(connection, sqlite3.Connection):
            connection.execute(f"PRAGMA max_page_count = {cap['pages']}")

    event.listen(Pool, "checkout", on_checkout)
    yield cap
    event.remove(Pool, "checkout", on_checkout)


def test_a_search_on_a_full_disk_stops_in_one_line_and_resumes_without_losing_an_evaluation(tmp_path, database_cap, monkeypatch, observe):
    db = tmp_path / "s.db"
    (tmp_path / "c.toml").write_text(CONFIG)
    original = Store.save_generation

    def fill_after_first_generation(store: Store, *args: object, **kwargs: object) -> None:
        original(store, *args, **kwargs)
        if not database_cap["pages"]:
            with closing(sqlite3.connect(db)) as connection:
                database_cap["pages"] = connection.execute("PRAGMA page_count").fetchone()[0]  # not one page more

    monkeypatch.setattr(Store, "save_generation", fill_after_first_generation)
    stopped = CliRunner().invoke(main, ["search", "launch", str(tmp_path / "c.toml"), "--db", str(db)])

    lines = stopped.output.strip().splitlines()
    observe("disk full", command="search launch", exit_code=stopped.exit_code, observed=lines[-1] if lines else "")
    assert stopped.exit_code == 1, stopped.output
    assert lines[-1].startswith(FULL) and not [line for line in lines[:-1] if "error" in line.lower()], stopped.output
    database_cap["pages"] = 0  # space freed
    monkeypatch.setattr(Store, "save_generation", original)
    stored = {c.schedule_hash for c, _ in Store(db).evaluations(1, status="done")}
    assert stored and len(Store(db).generations(1)) < 4

    resumed = CliRunner().invoke(main, ["search", "resume", "1", "--db", str(db)])

    assert resumed.exit_code == 0, resumed.output
    store = Store(db)
    hashes = [c.schedule_hash for c, _ in store.evaluations(1)]
    assert store.search(1).status == "finished" and len(store.generations(1)) == 4
    assert stored <= set(hashes) and len(hashes) == len(set(hashes))  # nothing lost, nothing stored twice


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "1", "-o", "{dir}/r.html", "--images", "0"],
        ["compare", "1", "1", "-o", "{dir}/f.png"],
        ["export", "1", "-o", "{dir}/s.json"],
    ],
    ids=["report", "compare", "export"],
)
def test_an_output_file_on_a_full_disk_is_one_line_and_leaves_no_file(argv, finished_search, tmp_path, monkeypatch, observe):
    """``report -o /dev/full`` itself is refused as a device; the shared writer's ENOSPC is met with its partial file on /dev/full."""
    real_open = os.open

    def open_partial_on_full_device(path: str | os.PathLike[str], flags: int, mode: int = 0o777, **kwargs: object) -> int:
        if str(path).endswith(".partial"):
            return real_open("/dev/full", os.O_WRONLY)
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", open_partial_on_full_device)
    result = CliRunner().invoke(main, [a.replace("{dir}", str(tmp_path)) for a in argv] + ["--db", str(finished_search)])

    lines = result.output.strip().splitlines()
    observe("disk full", command=" ".join(argv[:1]), exit_code=result.exit_code, observed=lines[-1].replace(str(tmp_path), "{dir}"))
    assert result.exit_code == 2, result.output
    assert lines[-1].startswith("error: cannot write") and lines[-1].endswith("No space left on device"), result.output
    assert list(tmp_path.iterdir()) == []  # neither the file nor a partial one
    assert Store(finished_search).exports(1) == []  # an export that was not written is not recorded
