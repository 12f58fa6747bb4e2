"""Every case of the bad-input corpus: one error line naming the problem, exit code 2, and no stored byte changed."""

from __future__ import annotations

import gc
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from prunesched.cli import main
from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import launch
from tests.reliability.bad_inputs import CASES, Case, Special

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One database file per ``Case.db`` kind, the ``finished`` one holding a real finished search (id 1)."""
    folder = tmp_path_factory.mktemp("databases")
    finished = folder / "finished.db"
    config = SearchConfig.from_dict(
        {
            "space": {"kind": "dato", "steps": 4},
            "evaluator": {"kind": "synthetic"},
            "proposer": {"population": 4, "generations": 1},
            "dispatch": {"workers": 1},
        }
    )
    assert launch(config, finished) == 1
    checkpoint(finished)
    shutil.copy(finished, folder / "newer.db")
    with sqlite3.connect(folder / "newer.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    checkpoint(folder / "newer.db")
    with sqlite3.connect(folder / "foreign.db") as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
    (folder / "empty.db").write_bytes(b"")
    (folder / "text.db").write_text("not a database\n")
    return {path.stem: path for path in folder.glob("*.db")}


def make(path: Path, content: str | bytes | Special) -> None:
    """Write ``content`` at ``path``, or make the special file it names."""
    if isinstance(content, Special):
        if content.kind == "fifo":
            os.mkfifo(path)
        else:
            with path.open("wb") as file:
                file.truncate(content.size)
    else:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def checkpoint(path: Path) -> None:
    """Move everything a WAL file holds into the database file itself, so the file alone shows every write."""
    gc.collect()  # engines a command left behind close their connections
    try:
        with sqlite3.connect(path) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.close()
    except sqlite3.DatabaseError:
        pass  # not an SQLite file: there is no WAL to fold in


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and "cache" not in p.parts}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_in_one_line_with_exit_code_2_and_nothing_stored_changes(case: Case, databases, tmp_path, observe):
    scratch = tmp_path / "in"
    scratch.mkdir()
    for name, content in case.files.items():
        make(scratch / name, content)
    db = tmp_path / "search.db"
    shutil.copy(databases[case.db], db)

    def fill(text: str) -> str:
        return text.replace("{dir}", str(scratch)).replace("{db}", str(db))

    for name, target in case.symlinks.items():
        (scratch / name).symlink_to(fill(target))
    for name, target in case.hardlinks.items():
        (scratch / name).hardlink_to(fill(target))
    before = snapshot(tmp_path)
    argv = [fill(a) for a in case.argv]

    result = CliRunner().invoke(main, argv)

    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    observe(
        "bad input",
        case=case.name,
        command="prunesched " + " ".join(case.argv),
        exit_code=result.exit_code,
        observed=(lines[-1] if lines else "").replace(str(scratch), "{dir}").replace(str(db), "{db}"),
    )
    assert result.exit_code == 2, result.output
    assert errors == lines[-1:], result.output  # one error line, last; progress lines of long commands may precede it
    assert case.expect in errors[0]
    checkpoint(db)
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.endswith(("-wal", "-shm"))}
    assert after == before  # the database byte-identical, and no file written or left half-written


def test_the_corpus_covers_at_least_thirty_distinct_cases():
    assert len({c.name for c in CASES}) == len(CASES) >= 30
