"""The coordinator SIGKILLed at random points, then resumed: nothing lost, nothing evaluated twice, the same front.

Each run starts a real coordinator process (``tests/reliability/crasher.py``) on the test's Ray
instance and a real SQLite file, lets it kill itself at a drawn passage through one of four
points, and resumes the search in this process. The final front must equal that of an
uninterrupted run with the same seed.
"""

from __future__ import annotations

import random
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from prunesched.runtime.schedule import Schedule
from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import launch, resume
from prunesched.storage import Store
from tests.reliability.crasher import EXPORT, POINTS, crash
from tests.search.fakes import RecordingEvaluator, evaluated_hashes

pytestmark = pytest.mark.usefixtures("ray_local")

RUNS = 24
CONFIG = {
    "seed": 7,
    "space": {"kind": "dato", "steps": 6},
    "evaluator": {"kind": "synthetic"},
    "proposer": {"population": 6, "generations": 4},
    "dispatch": {"workers": 2, "timeout_s": 60},
}


def final_front(db: Path, search_id: int) -> list[tuple[str, float, float]]:
    store = Store(db)
    return sorted(
        (c.schedule_hash, e.objective_0, e.objective_1) for c, e in store.candidates_by_id(store.generations(search_id)[-1].front)
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("uninterrupted")
    search_id = launch(SearchConfig.from_dict(CONFIG), folder / "u.db", factory=lambda: RecordingEvaluator(folder / "log"))
    passages = {"dispatch": len(evaluated_hashes(folder / "log")), "snapshot": CONFIG["proposer"]["generations"], "export": 1}
    return {"front": final_front(folder / "u.db", search_id), "passages": passages | {"commit": passages["dispatch"]}}


@pytest.mark.parametrize("run", range(RUNS))
def test_a_coordinator_killed_anywhere_resumes_to_the_uninterrupted_front(run, uninterrupted, tmp_path, observe):

    point = POINTS[run % len(POINTS)]
    count = random.Random(run).randint(1, uninterrupted["passages"][point])
    db, before, after = tmp_path / "s.db", tmp_path / "before.log", tmp_path / "after.log"
    crash(db, before, point, count, CONFIG)

    done_at_kill = {c.schedule_hash for c, _ in Store(db).evaluations(1, status="done")}
    if point != "export":
        resume(1, db, factory=lambda: RecordingEvaluator(after))
    with closing(sqlite3.connect(db)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    store = Store(db)
    rows = store.evaluations(1)
    hashes = [c.schedule_hash for c, _ in rows]
    observe(
        "coordinator crash",
        run=run,
        point=point,
        passage=count,
        status=store.search(1).status,
        evaluations=len(hashes),
        evaluated_again=len(done_at_kill & set(evaluated_hashes(after))),
        same_front=final_front(db, 1) == uninterrupted["front"],
    )
    assert store.search(1).status == "finished"
    assert all(e.status == "done" for _, e in rows) and len(hashes) == len(set(hashes))
    assert not done_at_kill & set(evaluated_hashes(after))  # nothing finished before the kill ran again
    assert set(evaluated_hashes(before)) | set(evaluated_hashes(after)) == set(hashes)
    assert final_front(db, 1) == uninterrupted["front"]
    if point == "export":  # killed between writing and renaming: no schedule file, no export recorded
        assert not (tmp_path / EXPORT).exists() and store.exports(1) == []
        assert Schedule.load(tmp_path / f".{EXPORT}.partial").hash in hashes  # what was written was whole


OPTUNA = CONFIG | {"seed": 11, "proposer": {"backend": "optuna", "sampler": "nsga2", "population": 6, "generations": 3}}
"""A real Optuna NSGA-II search: its snapshot is the told trials as JSON (optuna 5's sampler holds a lock and cannot be pickled)."""


def fronts(db: Path, search_id: int) -> list[tuple[int, float | None, list[str]]]:
    store = Store(db)
    return [
        (g.number, g.hypervolume, sorted(c.schedule_hash for c, _ in store.candidates_by_id(g.front))) for g in store.generations(search_id)
    ]


@pytest.mark.parametrize("point", ["commit", "snapshot"])
def test_an_optuna_nsga2_search_killed_and_resumed_ends_as_an_uninterrupted_one(point, tmp_path, observe):
    """Killed mid-generation 1 (after an evaluation's commit) or while storing generation 1; resumed in this process."""

    whole, whole_log = tmp_path / "whole.db", tmp_path / "whole.log"
    reference = launch(SearchConfig.from_dict(OPTUNA), whole, factory=lambda: RecordingEvaluator(whole_log))
    count = {"commit": len(evaluated_hashes(whole_log)) // 2 + 1, "snapshot": 2}[point]

    db, before, after = tmp_path / "s.db", tmp_path / "before.log", tmp_path / "after.log"
    crash(db, before, point, count, OPTUNA)
    done_at_kill = {c.schedule_hash for c, _ in Store(db).evaluations(1, status="done")}
    generations_at_kill = len(Store(db).generations(1))
    assert done_at_kill and generations_at_kill < 3

    resume(1, db, factory=lambda: RecordingEvaluator(after))
    store = Store(db)
    done = [c.schedule_hash for c, _ in store.evaluations(1, status="done")]
    observe(  # the fields of the random-kill runs, so the reliability page shows these runs in the same table
        "coordinator crash",
        run=f"optuna nsga2 ({generations_at_kill}/3 generations stored)",
        point=point,
        passage=count,
        status=store.search(1).status,
        evaluations=len(done),
        evaluated_again=len(done_at_kill & set(evaluated_hashes(after))),
        same_front=fronts(db, 1) == fronts(whole, reference),
    )
    assert store.search(1).status == "finished"
    assert done_at_kill <= set(done) and len(done) == len(set(done)) == len(store.evaluations(1))  # nothing lost, all done
    assert not done_at_kill & set(evaluated_hashes(after))  # nothing finished before the kill ran again
    assert sorted(done) == sorted(c.schedule_hash for c, _ in Store(whole).evaluations(reference, status="done"))
    assert fronts(db, 1) == fronts(whole, reference) and len(fronts(db, 1)) == 3
