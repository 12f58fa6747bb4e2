"""Worker faults: a worker killed mid-evaluation, one that hangs, one that raises, metrics that cannot be stored.

Each fault strikes one candidate of a real search (local Ray, a real SQLite file, the synthetic
problem on one worker). Struck once, the candidate is retried and done; struck on every attempt,
it is recorded as failed with the cause. The other candidates are untouched, and every finished
evaluation is stored exactly once.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from prunesched.cli import main
from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import launch
from prunesched.storage import Store
from tests.reliability.fakes import FAULTS, FaultyEvaluator, NumpyEvaluator, lines, strict_json

pytestmark = pytest.mark.usefixtures("ray_local")

RETRIES = 1
CAUSES = {
    "exit": "failed: ActorDiedError",
    "hang": "timed out after 2 s on",
    "raise": "RuntimeError: injected fault",
    "nan": "invalid metrics: objective values [",
    "inf": "invalid metrics: objective values [",
    "missing": "invalid metrics: no numeric value for objective 'cost'",
    "not-a-number": "invalid metrics: no numeric value for objective 'cost'",
}


def config() -> SearchConfig:
    return SearchConfig.from_dict(
        {
            "space": {"kind": "dato", "steps": 4},
            "evaluator": {"kind": "synthetic"},
            "proposer": {"population": 4, "generations": 1},
            "dispatch": {"workers": 1, "timeout_s": 2, "retries": RETRIES},
        }
    )


@pytest.mark.parametrize("times", [1, RETRIES + 1], ids=["once", "always"])
@pytest.mark.parametrize("fault", FAULTS)
def test_a_faulty_evaluation_is_retried_then_recorded_with_its_cause_and_nothing_else_is_touched(tmp_path, fault, times, observe):
    search_id = launch(config(), tmp_path / "f.db", factory=lambda: FaultyEvaluator(tmp_path, fault, times))
    store = Store(tmp_path / "f.db")
    assert store.search(search_id).status == "finished"
    rows = {c.schedule_hash: (c, e) for c, e in store.evaluations(search_id)}
    (candidate, struck), attempts = rows.pop((tmp_path / "struck").read_text()), lines(tmp_path / "attempts")
    observe(
        "worker fault",
        fault=fault,
        struck="once" if times <= RETRIES else "on every attempt",
        status=struck.status,
        attempts=struck.attempts,
        error=struck.error,
        others_done_once=all(e.status == "done" and e.attempts == 1 for _, e in rows.values()),
    )
    assert struck.attempts == len(attempts) == min(times + 1, RETRIES + 1)
    if times <= RETRIES:
        assert struck.status == "done" and struck.error is None
    else:
        assert struck.status == "failed" and struck.metrics is None and struck.objective_0 is None
        assert CAUSES[fault] in struck.error
        assert struck.worker == attempts[-1]  # the worker that failed, not the one that replaced it
        if fault in ("exit", "hang"):
            assert attempts[-1] in struck.error
        assert all(candidate.id not in g.front for g in store.generations(search_id))
    assert all(e.status == "done" and e.attempts == 1 for _, e in rows.values())
    done = lines(tmp_path / "done")
    assert sorted(done) == sorted(c.schedule_hash for c, e in store.evaluations(search_id) if e.status == "done")


def test_numpy_metrics_are_stored_as_plain_json_and_a_nan_outside_the_objectives_as_null(tmp_path):
    db = tmp_path / "n.db"
    search_id = launch(config(), db, factory=NumpyEvaluator)
    rows = Store(db).evaluations(search_id)
    assert rows and all(e.status == "done" and e.metrics["spread"]["value"] is None for _, e in rows)
    shown = CliRunner().invoke(main, ["history", "--search", str(search_id), "--db", str(db), "--json"])
    assert shown.exit_code == 0, shown.output
    history = strict_json(shown.output)
    assert isinstance(history, list) and len(history) == len(rows)
