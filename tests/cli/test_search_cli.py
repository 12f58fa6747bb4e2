"""The search commands as a user runs them: launch from a TOML file, review, export, and clean refusals."""

from __future__ import annotations

import itertools
import json

import pytest
from click.testing import CliRunner

from prunesched.cli import main
from prunesched.runtime.schedule import Schedule
from prunesched.search.config import SearchConfig, preset_names
from tests.storage.dump import database_dump

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
[baselines]
enabled = false    # the counts below are the proposer's; tests/search/test_baselines.py covers baselines
[dispatch]
workers = 1
"""


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    (folder / "search.toml").write_text(CONFIG)
    db = folder / "prunesched.db"
    result = CliRunner().invoke(main, ["search", "launch", str(folder / "search.toml"), "--db", str(db), "--backend", "optuna"])
    assert result.exit_code == 0, result.output
    return folder, db, result.output


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_launch_reports_progress_and_status_shows_the_finished_search(searched):
    _, db, output = searched
    assert "generation 1/2  done 6  running 0  failed 0  front" in output
    assert "generation 2/2" in output and "search 1 finished" in output
    status = run("search", "status", "--db", str(db))
    assert status.exit_code == 0
    line = next(row for row in status.output.splitlines() if row.startswith("1 ")).split()
    assert line[:4] == ["1", "cli", "finished", "2/2"]
    config = json.loads(run("history", "--json", "--db", str(db)).output)[0]["config"]
    assert config["proposer"]["backend"] == "optuna"  # --backend overrides the file


def test_front_json_lists_non_dominated_points(searched):
    _, db, _ = searched
    result = run("front", "1", "--json", "--db", str(db))
    assert result.exit_code == 0, result.output
    points = json.loads(result.output)
    values = [(p["objectives"]["error"], p["objectives"]["cost"]) for p in points]
    assert values == sorted(values) and all(b[1] < a[1] for a, b in itertools.pairwise(values))
    earlier = json.loads(run("front", "1", "--generation", "0", "--json", "--db", str(db)).output)
    assert earlier and all(p["generation_born"] == 0 for p in earlier)


def test_export_writes_a_schedule_with_provenance_and_records_it(searched):
    folder, db, _ = searched
    out = folder / "best.json"
    result = run("export", "1", "--pick", "best", "-o", str(out), "--db", str(db))
    assert result.exit_code == 0, result.output
    schedule = Schedule.load(out)
    front = json.loads(run("front", "1", "--json", "--db", str(db)).output)
    assert schedule.provenance["candidate"] == front[0]["candidate"]
    assert schedule.provenance["pick"] == "best" and schedule.provenance["search"] == 1
    assert schedule.to_dict()["steps"] == front[0]["schedule"]["steps"]


def test_history_filters_one_search_by_status_and_generation(searched):
    _, db, _ = searched
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
        (
            ["export", "1", "--candidate", "1", "-o", "/nonexistent/dir/x.json"],
            "cannot write '/nonexistent/dir/x.json': No such file or directory",
        ),
    ],
)
def test_bad_requests_exit_2_with_one_line_and_leave_the_database_unchanged(searched, args, message):
    _, db, _ = searched
    before = database_dump(db)
    result = run(*args, "--db", str(db))
    assert result.exit_code == 2
    assert message in result.output
    assert database_dump(db) == before


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[space]\nsteps = 6\n[evaluator]\nkind = 'synthetic'\n[proposer]\npopulaton = 4\n",
            "unknown key 'populaton' in [proposer]; valid: backend",
        ),
        ("[space]\nsteps = 6\n[evaluator]\nkind = 'magic'\n", "unknown evaluator kind 'magic'; valid: synthetic, pipeline"),
        ("[space]\nsteps = 6\n[evaluator]\nkind = 'synthetic'\nobjectives = ['fid', 'cost']\n", "unknown key 'objectives' in [evaluator]"),
        (
            "objectives = ['fid', 'cost']\n[space]\nsteps = 6\n[evaluator]\nkind = 'synthetic'\n",
            "objectives must be two metrics of the synthetic evaluator",
        ),
        ("[space\nsteps = 6\n", "is not valid TOML"),
        ("[evaluator]\nkind = 'synthetic'\n", "needs a [space] table"),
        ("reference_point = 5\n[space]\nsteps = 6\n[evaluator]\nkind = 'synthetic'\n", "reference_point must be two finite numbers"),
        (
            "objectives = ['mse', 'psnr']\n[space]\nsteps = 5\n[evaluator]\nkind = 'pipeline'\n",
            "objectives must be two metrics of the pipeline evaluator: "
            "feature_distance_gmean, feature_distance, mse, latency_s, relative_latency",
        ),
        (
            "[space]\nsteps = 6\n[evaluator]\nkind = 'pipeline'\nmodel = 'sd15'\n",
            "unknown model 'sd15': not a built-in (shapes, shapes-dit, tiny-sd, tiny-sdxl, tiny-sd3, tiny-pixart, tiny-flux)",
        ),
        ("[space]\nsteps = 6\n[evaluator]\nkind = 'pipeline'\nimages = 0\n", "images must be an integer from 1 to 100,000, got 0"),
        (
            "[space]\nsteps = 6\n[evaluator]\nkind = 'synthetic'\n[dispatch]\nworkers = 'two'\n",
            "workers must be an integer from 1 to 1,024, got 'two'",
        ),
        ("[space]\nsteps = 6\n[evaluator]\nkind = 'synthetic'\n[dispatch]\ngpus_per_worker = 1\n", "need 2 GPUs but the Ray cluster has 0"),
        (
            "[space]\nsteps = 6\n[evaluator]\nkind = 'pipeline'\nnum_inference_steps = 4\n[dispatch]\nworkers = 1\n",
            "[space] steps is 6 but the evaluator's denoising loop has 5 iterations",
        ),
    ],
)
def test_a_bad_config_is_refused_before_a_search_is_stored(tmp_path, text, message):
    (tmp_path / "bad.toml").write_text(text)
    db = tmp_path / "new.db"
    result = run("search", "launch", str(tmp_path / "bad.toml"), "--db", str(db))
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not db.exists() or not [row for row in database_dump(db) if 'INSERT INTO "searches"' in row]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "sd15"], "unknown search preset 'sd15'; valid presets: shapes, shapes-dit"),
        (["some.toml", "--preset", "shapes"], "give a CONFIG file or --preset, not both"),
    ],
)
def test_a_bad_preset_is_refused_in_one_line_before_a_search_is_stored(tmp_path, args, message):
    db = tmp_path / "new.db"
    result = run("search", "launch", *args, "--db", str(db))
    assert result.exit_code == 2 and message in result.output
    assert not db.exists()


def test_every_preset_is_a_valid_search_config_and_the_default_is_the_shapes_one():
    assert preset_names() == ["shapes", "shapes-dit"]
    assert SearchConfig.default() == SearchConfig.preset("shapes")
    assert {SearchConfig.preset(name).evaluator.model for name in preset_names()} == {"shapes", "shapes-dit"}


@pytest.mark.parametrize("command", [["search", "status"], ["history"], ["front", "1"], ["db", "upgrade"]])
def test_commands_other_than_launch_refuse_a_missing_database_and_create_none(tmp_path, command):
    result = run(*command, "--db", str(tmp_path / "none.db"))
    assert result.exit_code == 2 and "no database at" in result.output
    assert not (tmp_path / "none.db").exists()


def test_ctrl_c_during_a_search_says_how_to_resume_it(capsys):
    from prunesched.cli.render import ProgressView
    from prunesched.search.coordinator import Progress

    with pytest.raises(SystemExit) as stopped, ProgressView(4, "runs.db") as view:
        view(
            Progress(
                search_id=3,
                generation=1,
                generations=4,
                done=9,
                running=2,
                failed=0,
                front_size=4,
                hypervolume=0.5,
                generation_stored=False,
            )
        )
        raise KeyboardInterrupt
    assert stopped.value.code == 130
    assert "search 3 interrupted; continue it with 'prunesched search resume 3 --db runs.db'" in capsys.readouterr().err


def test_no_command_function_is_shadowed_by_a_name_it_imports_or_takes():
    """A command's local import or parameter that reuses a module-level name (``front``, ``export``, ``db``) hides it inside."""
    import ast
    import inspect

    import prunesched.cli.search as module

    tree = ast.parse(inspect.getsource(module))
    top = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    shadowed = []
    for function in (node for node in tree.body if isinstance(node, ast.FunctionDef)):
        local = {a.arg for a in function.args.args + function.args.kwonlyargs}
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom):
                local |= {alias.asname or alias.name for alias in node.names}
        shadowed += [f"{function.name}: {name}" for name in sorted(local & top)]
    assert shadowed == []
