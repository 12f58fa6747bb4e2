"""The search commands as a user runs them: launch from a TOML file, review, export, and clean refusals."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from prunesched.cli import main
from prunesched.runtime.schedule import Schedule

pytestmark = pytest.mark.usefixtures("ray_local")

CONFIG = """
name = "cli"
seed = 1
[space]
kind = "dato"
steps = 6
[evaluator]
kind = "synthetic"
[proposer]
population = 6
generations = 2
[dispatch]
workers = 1
"""


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    (folder / "search.toml").write_text(CONFIG)
    db = folder / "prunesched.db"
    result = CliRunner().invoke(main, ["search", "launch", str(folder / "search.toml"), "--db", str(db)])
    assert result.exit_code == 0, result.output
    return folder, db


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_launch_reports_progress_and_status_shows_the_finished_search(searched):
    _, db = searched
    status = run("search", "status", "--db", str(db))
    assert status.exit_code == 0
    line = [row for row in status.output.splitlines() if row.startswith("1 ")][0].split()
    assert line[:4] == ["1", "cli", "finished", "2/2"]


def test_front_json_lists_non_dominated_points(searched):
    _, db = searched
    result = run("front", "1", "--json", "--db", str(db))
    assert result.exit_code == 0, result.output
    points = json.loads(result.output)
    values = [(p["objectives"]["error"], p["objectives"]["cost"]) for p in points]
    assert values == sorted(values) and all(b[1] < a[1] for a, b in zip(values, values[1:]))
    earlier = json.loads(run("front", "1", "--generation", "0", "--json", "--db", str(db)).output)
    assert earlier and all(p["generation_born"] == 0 for p in earlier)


def test_export_writes_a_schedule_with_provenance_and_records_it(searched):
    folder, db = searched
    out = folder / "best.json"
    result = run("export", "1", "--pick", "best", "-o", str(out), "--db", str(db))
    assert result.exit_code == 0, result.output
    schedule = Schedule.load(out)
    front = json.loads(run("front", "1", "--json", "--db", str(db)).output)
    assert schedule.provenance["candidate"] == front[0]["candidate"]
    assert schedule.provenance["pick"] == "best" and schedule.provenance["search"] == 1
    assert schedule.to_dict()["steps"] == front[0]["schedule"]["steps"]


def test_history_filters_one_search_by_status_and_generation(searched):
    _, db = searched
    everything = json.loads(run("history", "--search", "1", "--json", "--db", str(db)).output)
    born_later = json.loads(run("history", "--search", "1", "--generation", "1", "--status", "done", "--json", "--db", str(db)).output)
    assert len(everything) == len({e["schedule_hash"] for e in everything}) >= 6
    assert born_later and all(e["generation_born"] == 1 and e["status"] == "done" for e in born_later)
    assert len(born_later) < len(everything)
    assert "cli" in run("history", "--db", str(db)).output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["front", "9"], "error: no search with id 9; known ids: 1"),
        (["front", "1", "--generation", "7"], "error: search 1 has no generation 7; stored: 0..1"),
        (["export", "1", "--candidate", "999", "-o", "x.json"], "error: search 1 has no candidate 999"),
        (["search", "resume", "1"], "error: search 1 has finished; there is nothing to resume"),
        (["history", "--status", "done"], "add --search ID"),
    ],
)
def test_bad_requests_exit_2_with_one_line_and_leave_the_database_unchanged(searched, args, message):
    _, db = searched
    before = db.read_bytes()
    result = run(*args, "--db", str(db))
    assert result.exit_code == 2
    assert message in result.output
    assert db.read_bytes() == before


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[space]\nsteps = 6\n[evaluator]\nkind = 'synthetic'\n[proposer]\npopulaton = 4\n", "unknown key 'populaton' in [proposer]; valid: backend"),
        ("[space]\nsteps = 6\n[evaluator]\nkind = 'magic'\n", "unknown evaluator kind 'magic'; valid: synthetic, pipeline"),
        ("[space]\nsteps = 6\n[evaluator]\nkind = 'synthetic'\nobjectives = ['fid', 'cost']\n", "unknown key 'objectives' in [evaluator]"),
        ("objectives = ['fid', 'cost']\n[space]\nsteps = 6\n[evaluator]\nkind = 'synthetic'\n", "objectives must be two metrics of the synthetic evaluator"),
        ("[space\nsteps = 6\n", "is not valid TOML"),
        ("[evaluator]\nkind = 'synthetic'\n", "needs a [space] table"),
    ],
)
def test_a_bad_config_is_refused_before_anything_is_written(tmp_path, text, message):
    (tmp_path / "bad.toml").write_text(text)
    result = run("search", "launch", str(tmp_path / "bad.toml"), "--db", str(tmp_path / "new.db"))
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "new.db").exists()


def test_review_commands_refuse_a_missing_database(tmp_path):
    result = run("search", "status", "--db", str(tmp_path / "none.db"))
    assert result.exit_code == 2 and "no database at" in result.output
