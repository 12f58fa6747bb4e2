"""Attacks through the files prunesched reads: none of them gets code to run.

Every payload would create the file ``pwned`` in the working directory if it ran; each test
checks that the attack is refused with a one-line error and that the file never appears.
"""

from __future__ import annotations

import ast
import hashlib
import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

import prunesched
from prunesched.cli import main
from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import launch
from tests.reliability.fakes import strict_json

pytestmark = pytest.mark.usefixtures("ray_local")

SYSTEM = b"cos\nsystem\n(S'touch pwned'\ntR."
"""A protocol-0 pickle that runs ``os.system('touch pwned')`` when loaded."""
EVAL = b'cbuiltins\neval\n(S\'open("pwned", "w")\'\ntR.'
"""The same through ``builtins.eval``."""
SHELL_PATHS = ["$(touch pwned)", "`touch pwned`", "x; touch pwned", "| touch pwned"]


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    assert not (tmp_path / "pwned").exists(), "a payload ran"


def refused(observe: Callable[..., None], argv: list[str], expect: str) -> None:
    result = CliRunner().invoke(main, argv)
    observe("attack", command="prunesched " + " ".join(argv), exit_code=result.exit_code, observed=result.output.strip().splitlines()[-1])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1].startswith("error: ") and expect in result.output, result.output


@pytest.mark.parametrize("payload", [SYSTEM, EVAL], ids=["os.system", "builtins.eval"])
def test_a_pickle_is_never_read_as_a_schedule_or_a_config(workdir, payload, observe):
    (workdir / "s.json").write_bytes(payload)
    (workdir / "c.toml").write_bytes(payload)
    refused(observe, ["schedule", "show", "s.json"], "is not JSON")
    refused(observe, ["search", "launch", "c.toml", "--db", "x.db"], "is not valid TOML")
    assert not (workdir / "x.db").exists()


def test_object_tags_in_json_and_toml_are_unknown_fields_not_instructions(workdir, observe):
    tagged = {"format": "prunesched.schedule", "version": 1, "steps": [{"cache": "full", "prune": 0.0}]}
    (workdir / "a.json").write_text(json.dumps({**tagged, "py/object": "os.system"}))
    (workdir / "b.json").write_text(json.dumps({**tagged, "method": {"name": "dato", "py/reduce": ["os.system", "touch pwned"]}}))
    (workdir / "c.toml").write_text('[space]\nsteps = 4\n[evaluator]\nkind = "os.system"\n')
    (workdir / "d.toml").write_text('[space]\nsteps = 4\n[evaluator]\nkind = "synthetic"\nfactory = "subprocess:call"\n')
    refused(observe, ["schedule", "show", "a.json"], "unknown schedule field 'py/object'")
    refused(observe, ["schedule", "show", "b.json"], "has no parameter 'py/reduce'")
    refused(observe, ["search", "launch", "c.toml", "--db", "x.db"], "os.system")
    refused(observe, ["search", "launch", "d.toml", "--db", "x.db"], "unknown key 'factory'")


@pytest.mark.parametrize("path", SHELL_PATHS)
def test_paths_are_file_names_never_shell(workdir, path, observe):
    (workdir / "s.json").write_text(prunesched.Schedule.uniform(5).to_json())
    refused(observe, ["search", "launch", path, "--db", "x.db"], "cannot read search config")
    refused(observe, ["front", "1", "--db", path], "no database at")
    refused(observe, ["schedule", "show", path], "cannot read schedule file")
    refused(
        observe,
        ["eval", "s.json", "--model", "tiny-sd", "--prompts", path, "--images", "1", "--steps", "4", "--cache-dir", "c"],
        "cannot read",
    )


PLANTED_JSON = json.dumps({"format": "prunesched.proposer-state", "version": 1, "py/reduce": ["os.system", "touch pwned"]}).encode()
"""A JSON snapshot that names code, as jsonpickle would: it is data, and not a proposer state."""


@pytest.mark.parametrize(
    ("payload", "expect"),
    [
        (SYSTEM, "never unpickles snapshots"),
        (EVAL, "never unpickles snapshots"),
        (PLANTED_JSON, "is of backend None/None"),
    ],
    ids=["os.system", "builtins.eval", "json-tags"],
)
def test_a_planted_snapshot_is_refused_even_with_a_matching_checksum(workdir, payload, expect, observe):
    config = SearchConfig.from_dict(
        {
            "space": {"kind": "dato", "steps": 4},
            "evaluator": {"kind": "synthetic"},
            "proposer": {"population": 4, "generations": 2},
            "dispatch": {"workers": 1},
        }
    )
    search_id = launch(config, workdir / "s.db")
    with closing(sqlite3.connect(workdir / "s.db")) as connection:
        connection.execute(
            "UPDATE generations SET snapshot = ?, snapshot_sha256 = ? WHERE snapshot IS NOT NULL",
            (payload, hashlib.sha256(payload).hexdigest()),
        )
        connection.execute("UPDATE searches SET status = 'interrupted', owner = NULL")
        connection.commit()
    refused(observe, ["search", "resume", str(search_id), "--db", "s.db"], expect)


def test_an_exported_schedule_is_standard_json(workdir):
    config = SearchConfig.from_dict(
        {
            "space": {"kind": "dato", "steps": 4},
            "evaluator": {"kind": "synthetic"},
            "proposer": {"population": 4, "generations": 1},
            "dispatch": {"workers": 1},
        }
    )
    search_id = launch(config, workdir / "s.db")
    result = CliRunner().invoke(main, ["export", str(search_id), "-o", "out.json", "--db", "s.db"])
    assert result.exit_code == 0, result.output
    document = strict_json((workdir / "out.json").read_text())
    assert prunesched.Schedule.from_dict(document).hash == prunesched.Schedule.load(workdir / "out.json").hash


UNPICKLERS = {"pickle", "_pickle", "cloudpickle", "dill", "joblib", "shelve", "marshal", "jsonpickle"}


def test_the_package_has_no_code_path_that_runs_strings_or_unpickles():
    """A scan of the source: eval, exec, os.system, shell=True and yaml.load appear nowhere, and nothing imports a pickle module."""
    package = Path(prunesched.__file__).parent
    found = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                found += [f"{path.name}: import {m}" for m in modules if m.split(".")[-1] in UNPICKLERS]
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            shell = any(k.arg == "shell" and ast.unparse(k.value) == "True" for k in node.keywords)
            if name in ("eval", "exec", "os.system", "os.popen", "yaml.load", "yaml.unsafe_load") or shell:
                found.append(f"{path.name}: {name}")
            if "pickle" in name or "Unpickler" in name:
                found.append(f"{path.name}: {name}")
    assert found == []


HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\u202e[bold]markup[/bold]\r\nsecond line"
"""Terminal control: retitle the window, clear the screen, colour, reverse the text, rich markup, a new line."""


def test_stored_text_reaches_the_terminal_escaped_never_as_control_sequences(workdir, observe):
    config = SearchConfig.from_dict(
        {
            "name": HOSTILE,
            "space": {"kind": "dato", "steps": 4},
            "evaluator": {"kind": "synthetic"},
            "proposer": {"population": 4, "generations": 1},
            "dispatch": {"workers": 1},
        }
    )
    search_id = launch(config, workdir / "s.db")
    with closing(sqlite3.connect(workdir / "s.db")) as connection, connection:
        connection.execute("UPDATE evaluations SET error = ? WHERE id = 1", (HOSTILE,))
    for argv in (["search", "status"], ["history"], ["history", "--search", str(search_id)]):
        result = CliRunner().invoke(main, [*argv, "--db", "s.db"])
        shown = next((line.strip() for line in result.output.splitlines() if "pwned" in line), "")
        observe(
            "attack",
            command="prunesched " + " ".join(argv) + " (stored text with terminal escapes)",
            exit_code=result.exit_code,
            observed=shown,
        )
        assert result.exit_code == 0, result.output
        assert not {"\x1b", "\x07", "\r", "\u202e"} & set(result.output), repr(result.output)
        assert "\\x1b]0;pwned\\x07" in result.output  # shown, escaped
        assert "second line" not in "".join(line for line in result.output.splitlines() if "pwned" not in line)  # one row
    status = CliRunner().invoke(main, ["search", "status", "--db", "s.db"])
    assert "[bold]markup[/bold]" in status.output  # printed as text, not read as rich markup
