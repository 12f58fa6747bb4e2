"""Confirmation: every point that reaches the front is evaluated again on more images (the same for every candidate),
its values replaced by those, until the whole front is confirmed; the proposer is told the confirmed values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

from prunesched.cli import main
from prunesched.errors import ConfigError
from prunesched.search.config import SearchConfig
from prunesched.search.confirmation import ConfirmationConfig
from prunesched.search.coordinator import Progress, _guard, launch, resume
from prunesched.search.pareto import front_indices
from prunesched.storage import Store
from prunesched.storage.records import Outcome
from tests.search.tiny import tiny_sd_search


def confirmed_search(cache: Path, **tables: Any) -> SearchConfig:
    return tiny_sd_search(
        cache,
        {"images": 2},
        space={"kind": "dato", "steps": 5, "caches": ["reuse", 0, "full"], "ratios": [0.0, 0.7], "method": {"name": "dato"}},
        baselines={"deepcache_intervals": [2, 3], "deepcache_branches": [0], "uniform_ratios": [0.7], "dato_ours_b1": False},
        confirmation={"images": 4},
        validation={"enabled": False},
        proposer={"population": 4, "generations": 2},
        **tables,
    )


def test_a_confirmation_must_add_images_to_a_pipeline_evaluators():
    assert ConfirmationConfig().worker_settings(confirmed_search(Path("c")).evaluator).images == 2  # off: the evaluator's own
    config = confirmed_search(Path("c"))
    assert config.confirmation.worker_settings(config.evaluator).images == 4
    assert config.confirmation.evaluation_images(config.evaluator) == 2
    assert ConfirmationConfig().evaluation_images(config.evaluator) is None
    with pytest.raises(ConfigError, match=r"\[confirmation\] images must be more than \[evaluator\] images \(2\), got 2; 0 turns it off"):
        tiny_sd_search(Path("c"), {"images": 2}, confirmation={"images": 2})
    with pytest.raises(ConfigError, match=r"\[confirmation\] needs an evaluator with images \(kind pipeline\), not 'synthetic'"):
        SearchConfig.from_dict({"space": {"kind": "dato", "steps": 5}, "evaluator": {"kind": "synthetic"}, "confirmation": {"images": 8}})


@pytest.mark.usefixtures("ray_local")
def test_every_front_point_is_confirmed_on_more_images_and_the_proposer_is_told_the_confirmed_values(tmp_path):
    db = tmp_path / "search.db"
    search_id = launch(confirmed_search(tmp_path / "cache"), db)
    store = Store(db)
    rows = store.evaluations(search_id, status="done")
    confirmed = [(c, e) for c, e in rows if e.confirmation is not None]
    assert confirmed and len(confirmed) < len(rows)  # fronts hold some of the points, not all
    for _, evaluation in confirmed:
        unconfirmed = evaluation.confirmation["unconfirmed"]
        assert evaluation.metrics["mse"]["n"] == 4 and unconfirmed["metrics"]["mse"]["n"] == 2  # every value carries its n
        assert list(evaluation.objectives) != unconfirmed["objectives"]  # the four images' values replaced the two's
    assert all(e.metrics["mse"]["n"] == 2 for _, e in rows if e.confirmation is None)

    for generation in store.generations(search_id):
        members = store.candidates_by_id(generation.front)
        assert all(e.confirmation is not None for _, e in members)  # a front holds confirmed points only
    feasible = [(c, e) for c, e in rows if e.feasible]
    final = {feasible[i][0].id for i in front_indices([e.objectives for _, e in feasible])}
    assert final == set(store.generation(search_id).front)  # the stored front is the front of the stored (confirmed) values

    last = store.generation(search_id)
    told = {tuple(m["genome"]): m["objectives"] for m in json.loads(store.latest_snapshot(search_id))["state"]["population"]}
    members = [(c, e) for c, e in store.candidates_by_id(last.members) if e.confirmation is not None]
    assert members, "the last generation put a point on the front"
    for candidate, evaluation in members:
        assert told.get(tuple(candidate.genome), list(evaluation.objectives)) == pytest.approx(list(evaluation.objectives))

    history = CliRunner().invoke(main, ["history", "--search", str(search_id), "--json", "--db", str(db)])
    assert history.exit_code == 0, history.output
    assert sum(row["confirmation"] is not None for row in json.loads(history.output)) == len(confirmed)
    history = CliRunner().invoke(main, ["history", "--search", str(search_id), "--db", str(db)])
    assert history.exit_code == 0 and history.output.count("confirmed; was ") == len(confirmed)


class Workers:
    """What the guard reads of the search's workers: the full model's metrics on the first ``images`` of their images."""

    infos: ClassVar[list[dict[str, Any]]] = [{"full": {}}]

    def full_metrics(self, images: int | None) -> dict[str, Any]:
        n = images or 4
        low = {2: 0.5, 4: 0.8}[n]
        return {"ssim": {"value": 0.9, "n": n, "ci": [low, 1.0]}}


def test_each_evaluation_is_guarded_by_the_full_model_measured_on_as_many_images():
    config = confirmed_search(Path("c"), guardrails=[{"metric": "ssim", "min": "full"}])
    guard = _guard(config, Workers())  # type: ignore[arg-type]

    def violation(n: int) -> float | None:
        metrics = {"ssim": {"value": 0.7, "n": n, "ci": [0.6, 0.8]}, "mse": {"value": 0.1, "n": n}, "relative_macs": {"value": 0.5}}
        return guard(Outcome(1, True, 1, metrics, [0.1, 0.5])).violation

    assert violation(2) == 0  # above the lower bound of the full model's two images
    assert violation(4) == pytest.approx(0.1)  # below the tighter bound of its four


def test_a_failed_confirmation_keeps_the_values_and_says_why(tmp_path):
    store = Store(tmp_path / "search.db", mode="create")
    search_id = store.create_search("a", {}, 0, ["mse", "relative_macs"], "test")
    candidate, _ = store.candidate(search_id, "h", {}, (), 0)
    metrics = {"mse": {"value": 0.1, "n": 2}, "relative_macs": {"value": 0.5, "n": 1}}
    store.record(Outcome(candidate.id, True, 1, metrics, [0.1, 0.5]))
    store.record_confirmation(Outcome(candidate.id, False, 1, error="RuntimeError: out of memory"))
    _, evaluation = store.candidates_by_id([candidate.id])[0]
    assert evaluation.objectives == (0.1, 0.5) and evaluation.confirmation == {"error": "RuntimeError: out of memory"}
    assert store.done_objectives(search_id) == [(candidate.id, 0.1, 0.5)]


class Interrupt(Exception):
    pass


@pytest.mark.slow  # two searches and a resume, about a minute: out of the default run to keep CI under 25 minutes
@pytest.mark.usefixtures("ray_local")
def test_a_search_interrupted_while_confirming_resumes_to_the_same_fronts(tmp_path):
    config = confirmed_search(tmp_path / "cache")
    launch(config, tmp_path / "whole.db")

    last = [0]

    def stop_mid_round(update: Progress) -> None:
        if 0 < update.confirming < last[0]:
            raise Interrupt  # a round of confirmations with one of them stored and the others not
        last[0] = update.confirming

    with pytest.raises(Interrupt):
        launch(config, tmp_path / "cut.db", progress=stop_mid_round)
    cut = [e.confirmation is not None for _, e in Store(tmp_path / "cut.db").evaluations(1)]
    assert any(cut) and not all(cut)
    resume(1, tmp_path / "cut.db")

    def fronts(store: Store) -> list[list[str]]:
        return [sorted(c.schedule_hash for c, _ in store.candidates_by_id(g.front)) for g in store.generations(1)]

    assert fronts(Store(tmp_path / "cut.db")) == fronts(Store(tmp_path / "whole.db"))
