"""Screening: new candidates are scored on a few images, and only those that can still reach the front are
evaluated on all; the others keep their screening's values (with their n) and never stand on a front or in an export."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from prunesched.cli import main
from prunesched.errors import ConfigError
from prunesched.evaluation.settings import PipelineSettings
from prunesched.search.coordinator import launch
from prunesched.search.evaluators import SyntheticSettings
from prunesched.search.pareto import front_indices
from prunesched.search.screening import ScreeningConfig, can_reach, optimistic
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


def test_a_candidate_is_promoted_when_its_optimistic_point_is_not_dominated():
    metrics = {"q": {"value": 0.5, "n": 4, "ci": [0.3, 0.7]}, "c": {"value": 0.6, "n": 1, "ci": None}}
    point = optimistic(metrics, ["q", "c"])
    assert point == (0.3, 0.6)  # the lower bound of an interval, the value where there is none
    assert can_reach(point, [(0.4, 0.5), (0.1, 0.9)])  # better than the front's point at its cost, within its interval
    assert not can_reach(point, [(0.2, 0.6)])  # even its best case is dominated
    assert can_reach(point, [(0.3, 0.6)]) and can_reach(point, [])  # equal is not dominated; an empty front takes all


@pytest.mark.usefixtures("ray_local")
def test_a_screened_search_promotes_by_the_rule_and_keeps_screened_out_candidates_off_fronts_and_exports(tmp_path):
    config = tiny_sd_search(
        tmp_path / "cache",
        {"images": 4},
        space={"kind": "dato", "steps": 5, "caches": ["reuse", 0, "full"], "ratios": [0.0, 0.7], "method": {"name": "dato"}},
        baselines={"deepcache_intervals": [2, 3], "deepcache_branches": [0], "uniform_ratios": [0.7], "dato_ours_b1": False},
        screening={"images": 2},
        validation={"enabled": False},
        proposer={"population": 4, "generations": 2},
    )
    db = tmp_path / "search.db"
    search_id = launch(config, db)
    store = Store(db)
    rows = store.evaluations(search_id, status="done")
    full = {c.id: (c.generation_born, e.objectives) for c, e in rows if e.promoted is not False}
    screened = [(c, e) for c, e in rows if c.generation_born != BASELINE_GENERATION]
    assert screened and all(e.screening["metrics"]["mse"]["n"] == 2 for _, e in screened)
    assert all(e.screening is None and e.metrics["mse"]["n"] == 4 for c, e in rows if c.generation_born == BASELINE_GENERATION)
    for candidate, evaluation in screened:
        before = [objectives for born, objectives in full.values() if born < candidate.generation_born]
        front = [before[i] for i in front_indices(before)]
        expected = can_reach(optimistic(evaluation.screening["metrics"], config.objectives), front)
        assert evaluation.promoted is expected  # the rule, against the front of full evaluations before its generation
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
