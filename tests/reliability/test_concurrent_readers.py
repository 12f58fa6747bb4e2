"""Readers and the writer at once: ``front``, ``history``, ``search status``, ``report`` and ``export-optuna``
in five processes, in a loop, while a search writes the same SQLite file. No reader meets "database
is locked" and no write waits a second for them.

``PRUNESCHED_READERS_S`` sets how long the readers run (default 90 s). The search grows by
thousands of evaluations meanwhile, so ``report`` (plots of every evaluation) and ``export-optuna``
(Optuna's database takes each trial's 42 parameters row by row) get slower with every read; for
them, and for the table commands that share two cores with four other readers and the search,
the bar is clean reads (docs/reliability.md has how many each made); the writer's bar stays one second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import Progress, launch
from prunesched.storage import Store
from tests.reliability.reader import COMMANDS

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SECONDS = float(os.environ.get("PRUNESCHED_READERS_S", "90"))
WRITE_LIMIT_S = 1.0


class Enough(Exception):
    """Stops the search once the readers are done."""


def test_readers_never_meet_a_locked_database_and_never_hold_up_the_writer(tmp_path, monkeypatch, observe):
    db = tmp_path / "busy.db"
    writes: list[float] = []
    for name in ("record", "mark_running", "save_generation", "candidate"):  # every write the coordinator makes per evaluation
        monkeypatch.setattr(Store, name, timed(getattr(Store, name), writes))
    readers: list[subprocess.Popen] = []

    def start_readers_then_stop(progress: Progress) -> None:
        if progress.generation_stored and not readers:  # from the first stored generation on, every command has data
            for command in COMMANDS:
                readers.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "tests.reliability.reader",
                            command,
                            str(db),
                            str(SECONDS),
                            str(tmp_path / f"{command}.json"),
                        ],
                        cwd=ROOT,
                    )
                )
        if readers and all(r.poll() is not None for r in readers):
            raise Enough

    config = SearchConfig.from_dict(
        {
            "space": {"kind": "dato", "steps": 21},
            "evaluator": {"kind": "synthetic", "delay_s": 0.005},
            "proposer": {"population": 50, "generations": 10_000},  # the bound; the readers stop it long before
            "dispatch": {"workers": 2},
        }
    )
    with pytest.raises(Enough):
        launch(config, db, progress=start_readers_then_stop)
    results = [json.loads((tmp_path / f"{command}.json").read_text()) for command in COMMANDS]
    result = {"seconds": SECONDS, "readers": results, "writes": len(writes), "slowest_write_s": max(writes)}
    observe("readers", **result)
    assert all(r["errors"] == [] and r["reads"] >= 1 for r in results), results
    assert result["slowest_write_s"] < WRITE_LIMIT_S, result


def timed(method: Any, durations: list[float]) -> Any:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            durations.append(time.perf_counter() - start)

    return wrapped
