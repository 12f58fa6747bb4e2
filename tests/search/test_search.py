"""End-to-end searches on the shared local Ray instance with a real SQLite file.

The pipeline test runs the tiny SD-1.x pipeline on two actors; the others use the synthetic
problem (deterministic, instant) so that fronts can be compared exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import prunesched
from prunesched.cli import main
from prunesched.models.tiny import tiny_flux_pipeline
from prunesched.report.optuna_mirror import mirror_to_optuna
from prunesched.runtime.schedule import BlockCache, Schedule
from prunesched.search import snapshot
from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import Progress, launch, resume
from prunesched.storage import Store
from tests.search.fakes import CrashingOnceEvaluator, FailingEvaluator, RecordingEvaluator, evaluated_hashes

pytestmark = pytest.mark.usefixtures("ray_local")


def synthetic_config(**proposer) -> SearchConfig:
    return SearchConfig.from_dict(
        {
            "name": "synthetic",
            "seed": 4,
            "space": {"kind": "dato", "steps": 8},
            "evaluator": {"kind": "synthetic"},
            "proposer": {"population": 8, "generations": 5, **proposer},
            "dispatch": {"workers": 2, "timeout_s": 120, "retries": 1},
        }
    )


def test_a_pipeline_search_on_two_actors_stores_everything_and_exports_a_schedule_that_applies(tmp_path, sd_pipe):
    db = tmp_path / "search.db"
    config = SearchConfig.from_dict(
        {
            "name": "tiny-sd",
            "seed": 0,
            "objectives": ["mse", "relative_latency"],
            "space": {"kind": "dato", "steps": 5, "method": {"name": "dato"}},
            "evaluator": {"kind": "pipeline", "model": "tiny-sd", "images": 2, "num_inference_steps": 4},
            "proposer": {"population": 6, "generations": 2},
            "dispatch": {"workers": 2, "timeout_s": 300},
        }
    )
    updates: list[Progress] = []
    search_id = launch(config, db, progress=updates.append)

    store = Store(db)
    assert store.search(search_id).status == "finished"
    rows = store.evaluations(search_id)
    assert rows and all(e.status == "done" and e.attempts == 1 for _, e in rows)
    assert len({e.worker for _, e in rows}) == 2  # both actors evaluated
    for _, evaluation in rows:
        assert evaluation.metrics["mse"]["n"] == 2 and evaluation.metrics["mse"]["ci"] is not None
        assert evaluation.objective_1 == evaluation.metrics["relative_latency"]["value"] > 0
    generations = store.generations(search_id)
    assert [g.number for g in generations] == [0, 1]
    assert all(g.front and g.hypervolume is not None for g in generations)
    assert snapshot.loads(store.latest_snapshot(search_id), config.space, config.proposer, config.seed).generation == 2
    stored = [u for u in updates if u.generation_stored]
    assert stored[-1].generation == 1 and stored[-1].done == len(rows)
    assert updates[-1].stage == "validation" and updates[-1].running == 0  # then the final front and the baselines were validated
    assert all(e.validation["metrics"]["mse"]["n"] == 8 for c, e in rows if c.id in generations[-1].front)

    runner = CliRunner()
    shown = runner.invoke(main, ["front", str(search_id), "--db", str(db)])
    assert shown.exit_code == 0, shown.output
    assert f"front after generation 1: {len(generations[-1].front)} points" in shown.output
    out = tmp_path / "schedule.json"
    exported = runner.invoke(main, ["export", str(search_id), "--pick", "fastest", "-o", str(out), "--db", str(db)])
    assert exported.exit_code == 0, exported.output

    schedule = Schedule.load(out)
    chosen = store.candidates_by_id([schedule.provenance["candidate"]])[0][0]
    assert schedule.hash == chosen.schedule_hash
    assert schedule.provenance["objectives"]["relative_latency"] == min(e.objective_1 for c, e in rows if c.id in generations[-1].front)
    with prunesched.apply(sd_pipe, schedule) as handle:
        sd_pipe("a red circle", num_inference_steps=4, output_type="latent")
    assert [r.performed for r in handle.records] == [s.cache for s in schedule.steps]
    assert [e.candidate_id for e in store.exports(search_id)] == [chosen.id]


def dit_search(db: Path, model: str, space: dict, baselines: dict) -> tuple[int, list]:
    """A one-generation search of four on a tiny DiT pipeline that must finish with every evaluation done."""
    config = SearchConfig.from_dict(
        {
            "name": f"{model}-{space['kind']}",
            "seed": 0,
            "objectives": ["mse", "relative_latency"],
            "space": space,
            "evaluator": {"kind": "pipeline", "model": model, "images": 2, "num_inference_steps": 4},
            "proposer": {"population": 4, "generations": 1},
            "baselines": baselines,
            "dispatch": {"workers": 1, "timeout_s": 300},
        }
    )
    search_id = launch(config, db)
    store = Store(db)
    rows = store.evaluations(search_id)
    assert store.search(search_id).status == "finished" and rows and all(e.status == "done" for _, e in rows)
    return search_id, rows


def test_a_search_over_block_caches_and_cat_pruning_runs_on_a_dit_pipeline(tmp_path):
    """The blocks space on SD3 (two blocks: F1B0 or F0B0), with CAT reusing half of the image tokens in some phases."""
    space = {"kind": "blocks", "steps": 4, "phases": 2, "firsts": [0, 1], "lasts": [0], "intervals": [1, 2], "ratios": [0.0, 0.5]}
    baselines = {"deepcache_intervals": [2], "block_caches": ["F1B0"], "uniform_ratios": [0.5]}
    _search_id, rows = dit_search(tmp_path / "blocks.db", "tiny-sd3", space, baselines)
    assert {c.baseline for c, _ in rows} >= {"F1B0 N=2", "cat uniform 0.5"}
    steps = [step for c, _ in rows for step in Schedule.from_dict(c.schedule).steps]
    assert any(isinstance(step.cache, BlockCache) and step.prune > 0 for step in steps)


def test_a_dato_space_search_on_flux_exports_a_schedule_that_applies_unchanged(tmp_path):
    """DaTo's per-step space with no pruning on Flux: reuse, depth 0 (the first and last blocks) or full per step."""
    db = tmp_path / "flux.db"
    space = {"kind": "dato", "steps": 4, "ratios": [0.0]}
    search_id, _rows = dit_search(db, "tiny-flux", space, {"deepcache_intervals": [2], "uniform_ratios": [], "dato_ours_b1": False})
    out = tmp_path / "flux.json"
    exported = CliRunner().invoke(main, ["export", str(search_id), "--pick", "fastest", "-o", str(out), "--db", str(db)])
    assert exported.exit_code == 0, exported.output
    schedule = Schedule.load(out)
    assert any(step.cache != "full" for step in schedule.steps)
    pipe = tiny_flux_pipeline()
    with prunesched.apply(pipe, schedule) as handle:
        pipe("a red circle", num_inference_steps=4, output_type="latent", max_sequence_length=16)
    assert [r.requested for r in handle.records] == [s.cache for s in schedule.steps]


def test_a_search_with_forecast_genes_evaluates_and_stores_forecast_schedules(tmp_path):
    config = SearchConfig.from_dict(
        {
            "name": "forecast",
            "seed": 1,
            "space": {"kind": "dato", "steps": 8, "forecasts": [0, 1, 2]},
            "evaluator": {"kind": "synthetic"},
            "proposer": {"population": 8, "generations": 2},
            "dispatch": {"workers": 1, "timeout_s": 120},
        }
    )
    db = tmp_path / "forecast.db"
    search_id = launch(config, db)
    store = Store(db)
    rows = store.evaluations(search_id)
    assert store.search(search_id).status == "finished" and rows and all(e.status == "done" for _, e in rows)
    orders = {step.forecast for c, _ in rows for step in Schedule.from_dict(c.schedule).steps}
    assert orders == {0, 1, 2}
    assert all(len(c.genome) == 3 * 7 for c, _ in rows if c.baseline is None)
    study = mirror_to_optuna(store, search_id, f"sqlite:///{tmp_path / 'optuna.db'}")  # the orders are trial parameters there
    for trial in study.trials:
        steps = Schedule.from_dict(next(c.schedule for c, _ in rows if c.id == trial.user_attrs["candidate"])).steps
        assert [trial.params[f"step{i:03d}_forecast"] for i in range(8)] == [s.forecast for s in steps]


class Interrupt(Exception):
    pass


def _interrupt_at(generation: int, after_evaluations: int | None):
    """A progress callback that stops the search in ``generation``: after that many evaluations, or once it is stored."""
    seen = []

    def callback(p: Progress) -> None:
        if p.generation == generation:
            seen.append(p)
            if (after_evaluations is None and p.generation_stored) or len(seen) == after_evaluations:
                raise Interrupt

    return callback


@pytest.mark.parametrize("backend", ["pymoo", "optuna"])
def test_an_interrupted_search_resumes_to_the_same_fronts_without_evaluating_a_stored_schedule_again(tmp_path, backend):
    config = synthetic_config(backend=backend)
    whole = launch(config, tmp_path / "whole.db", factory=lambda: RecordingEvaluator(tmp_path / "whole.log"))

    db, log = tmp_path / "cut.db", tmp_path / "cut.log"
    factory = lambda: RecordingEvaluator(log)  # noqa: E731
    with pytest.raises(Interrupt):
        launch(config, db, progress=_interrupt_at(1, None), factory=factory)  # between generations
    store = Store(db)
    (search_id,) = [s.id for s in store.searches()]
    assert store.search(search_id).status == "interrupted"
    stored = {c.schedule_hash for c, _ in store.evaluations(search_id, status="done")}
    before = len(evaluated_hashes(log))
    with pytest.raises(Interrupt):
        resume(search_id, db, progress=_interrupt_at(3, 3), factory=factory)  # in the middle of a generation
    assert not set(evaluated_hashes(log)[before:]) & stored
    assert store.generation(search_id).number == 2  # generation 3 was cut before it was stored
    assert store.evaluations(search_id, generation=3, status="done")  # but some of its evaluations were
    stored = {c.schedule_hash for c, _ in store.evaluations(search_id, status="done")}
    before = len(evaluated_hashes(log))
    resume(search_id, db, factory=factory)
    assert not set(evaluated_hashes(log)[before:]) & stored

    reference, resumed = Store(tmp_path / "whole.db"), store
    assert resumed.search(search_id).status == "finished"

    def fronts(s: Store, i: int):
        return [(g.number, g.hypervolume, sorted(c.schedule_hash for c, _ in s.candidates_by_id(g.front))) for g in s.generations(i)]

    assert fronts(resumed, search_id) == fronts(reference, whole)
    assert len(fronts(reference, whole)) == 5
    done = resumed.evaluations(search_id, status="done")
    assert len(done) == len({c.schedule_hash for c, _ in done}) == len(reference.evaluations(whole, status="done"))


def test_duplicates_across_generations_cost_no_evaluation(tmp_path):
    config = SearchConfig.from_dict(
        {
            "space": {"kind": "dato", "steps": 3, "caches": ["reuse", "full"], "ratios": [0.5]},
            "evaluator": {"kind": "synthetic"},
            "baselines": {"enabled": False},  # counted here: only the proposer's schedules
            "proposer": {"backend": "random", "population": 6, "generations": 4},
            "dispatch": {"workers": 2, "timeout_s": 120},
        }
    )
    log = tmp_path / "memo.log"
    search_id = launch(config, tmp_path / "memo.db", factory=lambda: RecordingEvaluator(log))
    store = Store(tmp_path / "memo.db")
    proposed = sum(len(g.members) for g in store.generations(search_id))
    evaluated = evaluated_hashes(log)
    assert proposed == 24
    assert len(evaluated) == len(set(evaluated)) == len(store.evaluations(search_id)) <= 4


def test_a_failing_evaluation_is_retried_then_recorded_as_failed_and_dominated(tmp_path):
    log = tmp_path / "fail.log"
    search_id = launch(synthetic_config(generations=3), tmp_path / "fail.db", factory=lambda: FailingEvaluator(log))
    store = Store(tmp_path / "fail.db")
    assert store.search(search_id).status == "finished"
    failed = store.evaluations(search_id, status="failed")
    done = store.evaluations(search_id, status="done")
    assert failed and done
    for candidate, evaluation in failed:
        assert "injected failure: reuse at iteration 1" in evaluation.error
        assert evaluation.attempts == 2  # the first attempt and one retry
        assert evaluation.metrics is None and evaluation.objective_0 is None
        assert evaluated_hashes(log).count(candidate.schedule_hash) == 2
    failed_ids = {c.id for c, _ in failed}
    assert all(not failed_ids & set(g.front) for g in store.generations(search_id))


@pytest.mark.parametrize("fault", ["crash", "hang"])
def test_a_worker_that_dies_or_hangs_is_replaced_and_its_candidate_evaluated_again(tmp_path, fault):
    config = SearchConfig.from_dict(
        {
            "space": {"kind": "dato", "steps": 4},
            "evaluator": {"kind": "synthetic"},
            "proposer": {"population": 4, "generations": 1},
            "dispatch": {"workers": 1, "timeout_s": 5, "retries": 1},
        }
    )
    log, marker = tmp_path / "eval.log", tmp_path / "marker"
    hang = 60.0 if fault == "hang" else 0.0
    search_id = launch(config, tmp_path / "f.db", factory=lambda: CrashingOnceEvaluator(log, marker, hang_s=hang))
    store = Store(tmp_path / "f.db")
    rows = {c.schedule_hash: e for c, e in store.evaluations(search_id)}
    struck = rows[marker.read_text()]
    assert struck.status == "done" and struck.attempts == 2
    assert all(e.status == "done" for e in rows.values())
    assert sorted(evaluated_hashes(log)) == sorted(rows)  # every schedule finished exactly once


def test_a_snapshot_that_is_not_the_latest_generations_is_refused(tmp_path):
    from importlib.metadata import version

    from prunesched.errors import StorageError
    from prunesched.search.proposers import make_proposer

    config = synthetic_config()
    store = Store(tmp_path / "s.db", mode="create")
    search_id = store.create_search(config.name, config.to_dict(), config.seed, config.objectives, version("prunesched"))
    proposer = make_proposer(config.space, config.proposer, config.seed)
    for _ in range(2):  # two generations told, but only the first stored
        genomes = proposer.ask()
        proposer.tell(np.ones((len(genomes), 2)), np.ones(len(genomes), dtype=bool))
    store.save_generation(search_id, 0, [], [], None, snapshot.dumps(proposer))
    store.set_status(search_id, "interrupted")
    with pytest.raises(StorageError, match="snapshot is at generation 2, not after the latest stored one"):
        resume(search_id, tmp_path / "s.db")
