"""Load: 20,000 evaluations through the coordinator, its memory flat, its database still quick to read.

A real search (NSGA-II through pymoo, two Ray workers, a real SQLite file) of the instant
synthetic problem, so the coordinator, the dispatch loop and the database carry the whole load.
``PRUNESCHED_LOAD_EVALUATIONS`` changes the count. Reads are timed in this process (the query
and its display) and, for the record, as a fresh process, whose Python start-up adds about half
a second on 2 cores.
"""

from __future__ import annotations

import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from prunesched.bench.search import db_size
from prunesched.cli import main
from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import Progress, launch
from prunesched.storage import Store

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]

EVALUATIONS = int(os.environ.get("PRUNESCHED_LOAD_EVALUATIONS", "20000"))
POPULATION = 200
READ_LIMIT_S = 1.0


def rss_mib() -> float:
    """Resident memory of this process now."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def timed_cli(*argv: str) -> dict[str, float]:
    """Seconds ``prunesched ARGV`` takes in this process (the command itself) and as a fresh process (Python's start-up included)."""
    start = time.perf_counter()
    result = CliRunner().invoke(main, list(argv))
    in_process = time.perf_counter() - start
    assert result.exit_code == 0, result.output
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from prunesched.cli import main; main()", *argv], check=True, capture_output=True)
    return {"in_process_s": in_process, "fresh_process_s": time.perf_counter() - start}


def test_twenty_thousand_evaluations_keep_memory_flat_and_the_database_quick_to_read(tmp_path, observe):
    db = tmp_path / "load.db"
    config = SearchConfig.from_dict(
        {
            "space": {"kind": "dato", "steps": 21},
            "evaluator": {"kind": "synthetic"},
            "proposer": {"population": POPULATION, "generations": math.ceil(EVALUATIONS * 1.06 / POPULATION)},
            "dispatch": {"workers": 2},
        }
    )
    memory: list[float] = []

    def sample(progress: Progress) -> None:
        if progress.generation_stored:
            memory.append(rss_mib())

    start = time.perf_counter()
    search_id = launch(config, db, progress=sample)
    wall = time.perf_counter() - start
    store = Store(db)
    counts = store.counts(search_id)
    hashes = [c.schedule_hash for c, _ in store.evaluations(search_id)]
    reads = {
        "front": timed_cli("front", str(search_id), "--db", str(db)),
        "history": timed_cli("history", "--search", str(search_id), "--limit", "50", "--db", str(db)),
    }
    quarter = max(1, len(memory) // 4)
    result = {
        "evaluations": counts.done,
        "failed": counts.failed,
        "generations": len(memory),
        "wall_s": wall,
        "evaluations_per_s": counts.done / wall,
        "rss_mib_first_quarter": max(memory[:quarter]),
        "rss_mib_last_quarter": max(memory[-quarter:]),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "read_s": reads,
        **db_size(db, counts.done),
    }
    observe("load", **result)
    assert counts.done + counts.failed == len(hashes) == len(set(hashes)) and counts.failed == 0
    assert counts.done >= EVALUATIONS  # NSGA-II proposes some schedules again (about 5 %), served from the database
    assert result["rss_mib_last_quarter"] <= result["rss_mib_first_quarter"] + 64, result
    assert all(read["in_process_s"] < READ_LIMIT_S for read in reads.values()), reads
