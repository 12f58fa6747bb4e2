"""Screening: new candidates are scored on a few images, and only those that can still reach the front are
evaluated on all; the others keep their screening's values (with their n) and never stand on a front or in an export."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from prunesched.cli import main
from prunesched.errors import ConfigError
from prunesched.evaluation.settings import PipelineSettings
from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import Progress, launch, resume
from prunesched.search.evaluators import SyntheticSettings
from prunesched.search.pareto import front_indices
from prunesched.search.screening import ScreeningConfig, can_reach
from prunesched.storage import Store
from prunesched.storage.store import BASELINE_GENERATION
from tests.search.tiny import tiny_sd_search


def test_screening_runs_only_where_it_saves_images():
    assert ScreeningConfig(images=4).images_for(PipelineSettings(images=16)) == 4
    assert ScreeningConfig(images=4).images_for(PipelineSettings(images=4)) is None  # nothing to save
    assert ScreeningConfig(enabled=False).images_for(PipelineSettings(images=16)) is None
    assert ScreeningConfig().images_for(SyntheticSettings()) is None  # no images, no noise
    with pytest.raises(ConfigError, match=r"\[screening\] images must be an integer from 2 to 100,000, got 1"):
        ScreeningConfig(images=1)


def test_a_candidate_can_reach_the_front_unless_a_point_of_it_dominates():
    assert can_reach((0.3, 0.6), [(0.4, 0.5), (0.1, 0.9)])  # better at its cost than the front's points
    assert not can_reach((0.3, 0.6), [(0.2, 0.6)])
    assert can_reach((0.3, 0.6), [(0.3, 0.6)]) and can_reach((0.3, 0.6), [])  # equal is not dominated; an empty front takes all


def screened_search(cache: Path) -> SearchConfig:
    return tiny_sd_search(
        cache,
        {"images": 4},
        space={"kind": "dato", "steps": 5, "caches": ["reuse", 0, "full"], "ratios": [0.0, 0.7], "method": {"name": "dato"}},
        baselines={"deepcache_intervals": [2, 3], "deepcache_branches": [0], "uniform_ratios": [0.7], "dato_ours_b1": False},
        screening={"images": 2},
        validation={"enabled": False},
        proposer={"population": 4, "generations": 2},
    )


@pytest.mark.usefixtures("ray_local")
def test_a_screened_search_promotes_by_the_rule_and_keeps_screened_out_candidates_off_fronts_and_exports(tmp_path):
    config = screened_search(tmp_path / "cache")
    db = tmp_path / "search.db"
    search_id = launch(config, db)
    store = Store(db)
    rows = store.evaluations(search_id, status="done")
    assert rows and all(e.screening["metrics"]["mse"]["n"] == 2 for _, e in rows)  # the baselines too
    assert all(e.promoted and e.metrics["mse"]["n"] == 4 for c, e in rows if c.generation_born == BASELINE_GENERATION)
    full = [(c.generation_born, e) for c, e in rows if e.promoted]
    screened = [(c, e) for c, e in rows if c.generation_born != BASELINE_GENERATION]
    for candidate, evaluation in screened:
        before = [e for born, e in full if born < candidate.generation_born]
        front = [before[i].screening["objectives"] for i in front_indices([e.objectives for e in before])]
        expected = can_reach(evaluation.screening["objectives"], front)
        assert evaluation.promoted is expected  # compared on the same two images with the front before its generation
        n = evaluation.metrics["mse"]["n"]
        assert n == (4 if expected else 2)  # every stored value carries its n
        if not expected:
            assert list(evaluation.objectives) == evaluation.screening["objectives"] and not evaluation.feasible
    left_behind = [c.id for c, e in screened if e.promoted is False]
    assert left_behind, "the baselines' front screens out some candidates of this search"
    for generation in store.generations(search_id):
        assert not set(generation.front) & set(left_behind)

    runner = CliRunner()
    out = tmp_path / "out.json"
    refused = runner.invoke(main, ["export", str(search_id), "--candidate", str(left_behind[0]), "-o", str(out), "--db", str(db)])
    assert refused.exit_code == 2 and "is screened out on 2 images" in refused.output and not out.exists()
    history = runner.invoke(main, ["history", "--search", str(search_id), "--db", str(db)])
    assert history.exit_code == 0 and "screened out" in history.output


class Interrupt(Exception):
    pass


@pytest.mark.usefixtures("ray_local")
def test_a_search_interrupted_while_screening_resumes_to_the_same_decisions_and_fronts(tmp_path):
    config = screened_search(tmp_path / "cache")
    launch(config, tmp_path / "whole.db")
    calls = []

    def stop_in_generation_1(update: Progress) -> None:
        calls.append(update)
        if update.generation == 1 and sum(c.generation == 1 for c in calls) == 2:  # two screenings of it are stored
            raise Interrupt

    with pytest.raises(Interrupt):
        launch(config, tmp_path / "cut.db", progress=stop_in_generation_1)
    cut = Store(tmp_path / "cut.db")
    assert any(e.screening is not None and e.promoted is None for _, e in cut.evaluations(1, generation=1))  # cut mid-screening
    resume(1, tmp_path / "cut.db")

    def outcome(store: Store) -> tuple[list, dict]:
        fronts = [sorted(c.schedule_hash for c, _ in store.candidates_by_id(g.front)) for g in store.generations(1)]
        decisions = {c.schedule_hash: (e.status, e.promoted, e.objective_0) for c, e in store.evaluations(1)}
        return fronts, decisions

    assert outcome(cut) == outcome(Store(tmp_path / "whole.db"))
