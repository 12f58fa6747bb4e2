"""Exactly one coordinator owns a search: racing resumes, and resumes of a search a live coordinator runs.

The race is real: a coordinator process SIGKILLed mid-search (``tests/reliability/crasher.py``)
leaves its search marked running by a dead pid, then two ``prunesched search resume`` processes
(``tests/reliability/racer.py``) both read it, both pass the owner check, and claim it together.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import pytest
from click.testing import CliRunner

from prunesched.cli import main
from prunesched.storage import Store
from tests.reliability.crasher import ROOT, crash
from tests.storage.dump import database_dump

pytestmark = pytest.mark.usefixtures("ray_local")

CONFIG = {
    "seed": 3,
    "space": {"kind": "dato", "steps": 6},
    "evaluator": {"kind": "synthetic"},
    "proposer": {"population": 6, "generations": 3},
    "dispatch": {"workers": 1, "timeout_s": 60},
}


def test_of_two_resumes_racing_for_a_crashed_search_exactly_one_runs_it_and_the_other_leaves_it_alone(tmp_path, observe):

    db = tmp_path / "s.db"
    crash(db, tmp_path / "log", "commit", 8, CONFIG)
    assert Store(db).search(1).status == "running"  # its owner is dead: free to resume
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    racers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.racer", str(barrier), "2", "search", "resume", "1", "--db", str(db)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]

    first = _first_to_exit(racers)
    status_then = Store(db).search(1)
    winner = next(r for r in racers if r is not first)
    winner_err = winner.communicate(timeout=300)[1]
    loser_err = first.communicate()[1]

    observe("ownership", case="two resumes race", exit_codes=sorted([first.returncode, winner.returncode]), observed=loser_err.strip())
    assert (first.returncode, winner.returncode) == (2, 0), loser_err + winner_err
    assert loser_err.strip().splitlines() == [
        f"error: search 1 is being run by {socket.gethostname()}:{winner.pid}; it was taken while this one checked it"
    ]
    assert sorted(int(p.name) for p in barrier.iterdir()) == sorted(r.pid for r in racers)  # both had passed the checks
    # when the loser exited, the search was the winner's, running (or already finished by it), never marked interrupted
    assert (status_then.status, status_then.owner) in {("running", f"{socket.gethostname()}:{winner.pid}"), ("finished", None)}
    store = Store(db)
    hashes = [c.schedule_hash for c, _ in store.evaluations(1)]
    assert store.search(1).status == "finished" and len(store.generations(1)) == 3, winner_err
    assert len(hashes) == len(set(hashes)) and all(e.status == "done" for _, e in store.evaluations(1))
    with closing(sqlite3.connect(db)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def _first_to_exit(processes: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                return process
        time.sleep(0.01)
    raise TimeoutError("no racer finished")


@pytest.mark.parametrize(
    ("where", "force", "expect"),
    [
        ("here", False, "{owner}, a live process on this host; wait for it or stop it first"),
        ("here", True, "{owner}, a live process on this host; wait for it or stop it first"),
        ("elsewhere", False, "{owner} on another host; if that process is gone, resume with --force"),
    ],
    ids=["live-here", "live-here-force", "other-host"],
)
def test_a_search_a_live_coordinator_runs_is_refused_and_force_never_takes_one_on_this_host(
    finished_search, tmp_path, where, force, expect, observe
):
    db = tmp_path / "s.db"
    with closing(sqlite3.connect(finished_search)) as source, closing(sqlite3.connect(db)) as copy:
        source.backup(copy)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        owner = f"{socket.gethostname()}:{alive.pid}" if where == "here" else f"gpu-node-7:{alive.pid}"
        with closing(sqlite3.connect(db)) as connection, connection:
            connection.execute("UPDATE searches SET status = 'running', owner = ?", (owner,))
        before = database_dump(db)
        argv = ["search", "resume", "1", "--db", str(db), *(["--force"] if force else [])]
        result = CliRunner().invoke(main, argv)
    finally:
        alive.kill()
        alive.wait()
    observe("ownership", case=f"resume a search run by {where}" + (" --force" if force else ""), exit_code=result.exit_code)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == ["error: search 1 is being run by " + expect.format(owner=owner)]
    assert database_dump(db) == before
