"""cache-dit's config as a user writes it: from a search (``export --format cache-dit``) and from a schedule file
(``schedule convert``), the same for the same schedule; what cache-dit cannot express is refused and nothing is written."""

from __future__ import annotations

import json

from click.testing import CliRunner

from prunesched import BlockCache, Schedule, StepPlan
from prunesched.cli import main
from prunesched.runtime.paper_tables import dato_ours_b1
from prunesched.storage import Outcome, Store
from tests.storage.dump import database_dump

CACHED = Schedule(steps=tuple(StepPlan("full" if i % 3 == 0 else BlockCache(8, 0)) for i in range(7)))
PRUNED = Schedule.uniform(7, "full", 0.5)


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def searched(tmp_path):
    """A search database with two evaluated candidates: 1 caches blocks (cache-dit runs it), 2 prunes tokens."""
    db = tmp_path / "search.db"
    store = Store(db, mode="create")
    search = store.create_search("dit", {"evaluator": {"kind": "synthetic"}}, 0, ["error", "cost"], "test")
    for i, schedule in enumerate((CACHED, PRUNED)):
        candidate, _ = store.candidate(search, schedule.hash, schedule.to_dict(), [i], 0)
        store.record(Outcome(candidate.id, ok=True, attempts=1, metrics={"error": float(i)}, objectives=(float(i), 1.0 - i)))
    return db, store


def test_export_and_convert_write_the_same_cache_dit_config_and_export_records_it(tmp_path):
    db, store = searched(tmp_path)
    result = run("export", "1", "--candidate", "1", "--format", "cache-dit", "-o", str(tmp_path / "exported.json"), "--db", str(db))
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("exported.json as cache-dit")
    exported = json.loads((tmp_path / "exported.json").read_text())
    assert exported["cache_config"]["steps_computation_mask"] == [1, 0, 0, 1, 0, 0, 1]
    assert (exported["cache_config"]["Fn_compute_blocks"], exported["cache_config"]["Bn_compute_blocks"]) == (8, 0)
    assert exported["prunesched_schedule"]["provenance"]["candidate"] == 1
    assert store.exports(1)[0].pick == "candidate 1, as cache-dit"

    CACHED.save(tmp_path / "schedule.json")
    result = run("schedule", "convert", str(tmp_path / "schedule.json"), "--format", "cache-dit", "-o", str(tmp_path / "converted.json"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "converted.json").read_text())["cache_config"] == exported["cache_config"]


def test_a_schedule_cache_dit_cannot_run_is_refused_in_one_line_and_nothing_is_written_or_recorded(tmp_path):
    db, _ = searched(tmp_path)
    before = database_dump(db)
    result = run("export", "1", "--candidate", "2", "--format", "cache-dit", "-o", str(tmp_path / "out.json"), "--db", str(db))
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert result.output.startswith("error: step 0 prunes 0.5 of the tokens, which cache-dit cannot express")
    assert database_dump(db) == before and not (tmp_path / "out.json").exists()

    PRUNED.save(tmp_path / "pruned.json")
    result = run("schedule", "convert", str(tmp_path / "pruned.json"), "--format", "cache-dit", "-o", str(tmp_path / "out.json"))
    assert result.exit_code == 2 and "cache-dit cannot express" in result.output
    assert not (tmp_path / "out.json").exists()


def test_convert_turns_a_dato_table_into_a_schedule_document(tmp_path):
    ids, ratios = dato_ours_b1().to_dato()
    (tmp_path / "table.txt").write_text(" ".join(map(str, ids)) + "\n" + " ".join(map(str, ratios)) + "\n")
    result = run("schedule", "convert", str(tmp_path / "table.txt"), "--dato", "-o", str(tmp_path / "schedule.json"))
    assert result.exit_code == 0, result.output
    assert Schedule.load(tmp_path / "schedule.json").steps == dato_ours_b1().steps
