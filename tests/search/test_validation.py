"""Validation: after the last generation the final front and the baselines are evaluated again on more images and
fresh seeds, stored, shown by ``front --validated`` and used by ``export``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from prunesched.cli import main
from prunesched.errors import ConfigError
from prunesched.evaluation.settings import PipelineSettings
from prunesched.search import review
from prunesched.search.coordinator import launch
from prunesched.search.evaluators import SyntheticSettings
from prunesched.search.validation import SEED_OFFSET, ValidationConfig, challengers, validation_settings
from prunesched.storage import Store
from prunesched.storage.store import BASELINE_GENERATION
from tests.search.tiny import tiny_sd_search


def test_a_validation_uses_more_images_on_fresh_seeds_with_fid_and_measured_latency():
    settings = PipelineSettings(images=16, seed=3, cost=("predicted",))
    validation = validation_settings(settings, ValidationConfig(factor=4))
    assert validation is not None
    assert (validation.images, validation.seed, validation.reference) == (64, 3 + SEED_OFFSET, "model")
    assert validation.cost == ("predicted", "measured")
    assert not set(validation.spec().seeds) & set(settings.spec().seeds)
    assert validation_settings(settings, ValidationConfig(enabled=False)) is None
    assert validation_settings(SyntheticSettings(), ValidationConfig()) is None  # nothing to validate: no images, no noise
    with pytest.raises(ConfigError, match=r"\[validation\] factor must be an integer from 1 to 1,000, got 0"):
        ValidationConfig(factor=0)


def test_a_long_front_is_thinned_evenly_along_its_cost_keeping_both_ends():
    costs = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8]
    assert ValidationConfig().thinned(costs) == [1, 5, 3, 2, 4, 6, 0]  # by default every point, cheapest first
    assert ValidationConfig(max_front_points=3).thinned(costs) == [1, 2, 0]  # cheapest, middle, dearest
    assert ValidationConfig(max_front_points=10).thinned(costs) == ValidationConfig().thinned(costs)
    with pytest.raises(ConfigError, match=r"\[validation\] max_front_points must be an integer from 0 to 10,000, got -1"):
        ValidationConfig(max_front_points=-1)


def test_each_baseline_is_challenged_by_the_best_front_point_that_costs_no_more():
    front = [(0.1, 0.9), (0.2, 0.5), (0.4, 0.3)]  # (quality loss, cost)
    assert challengers(front, [(0.3, 0.6)]) == [1]  # of the two that cost <= 0.6, the lower loss
    assert challengers(front, [(0.5, 0.2)]) == []  # every point costs more
    assert challengers(front, [(0.3, 0.6), (0.5, 0.2), (0.05, 1.0), (0.9, 0.5)]) == [0, 1]
    assert challengers([], [(0.3, 0.6)]) == []


@pytest.mark.usefixtures("ray_local")
def test_a_thinned_validation_still_validates_every_baselines_challenger(tmp_path):
    db = tmp_path / "search.db"
    config = tiny_sd_search(
        tmp_path / "cache",
        {"feature_extractor": "shapes-judge", "repeats": 1, "cost": ["macs"]},
        objectives=["feature_distance_gmean", "relative_macs"],
        baselines={"deepcache_intervals": [2, 3], "deepcache_branches": [0], "uniform_ratios": [0.5], "dato_ours_b1": False},
        validation={"factor": 2, "max_front_points": 1},
        proposer={"population": 4, "generations": 2},
    )
    search_id = launch(config, db)
    store = Store(db)
    front = store.candidates_by_id(store.generation(search_id).front)
    searched = [(c, e) for c, e in front if c.baseline is None]
    baselines = [e for _, e in store.evaluations(search_id, generation=BASELINE_GENERATION, status="done") if e.feasible]
    expected = {searched[i][0].id for i in challengers([e.objectives for _, e in searched], [e.objectives for e in baselines])}
    validated = {c.id for c, e in searched if e.validation is not None}
    assert len(expected) >= 2  # so at least one is not the single thinned point
    assert expected <= validated  # the comparisons the summary makes are all re-measured
    assert len(validated) <= 1 + len(expected)  # and nothing else beyond the thinned point
    assert all(e.validation is not None for e in baselines)


@pytest.mark.usefixtures("ray_local")
def test_the_final_front_and_the_baselines_are_validated_and_export_picks_from_their_front(tmp_path):
    db = tmp_path / "search.db"
    config = tiny_sd_search(
        tmp_path / "cache",
        {"feature_extractor": "shapes-judge", "repeats": 1},
        objectives=["feature_distance", "relative_macs"],
        baselines={"deepcache_intervals": [2], "deepcache_branches": [0], "uniform_ratios": [], "dato_ours_b1": False},
        validation={"factor": 3},
        proposer={"population": 3, "generations": 2},
    )
    search_id = launch(config, db)
    store = Store(db)
    final = set(store.generation(search_id).front)
    baselines = {c.id for c, _ in store.evaluations(search_id, generation=BASELINE_GENERATION)}
    for candidate, evaluation in store.evaluations(search_id, status="done"):
        if candidate.id not in final | baselines:
            assert evaluation.validation is None  # only the final front and the baselines are validated
            continue
        validation = evaluation.validation
        metrics = validation["metrics"]
        assert metrics["feature_distance"]["n"] == metrics["mse"]["n"] == 6  # 3 x the search's 2 images
        assert {"fid", "kid", "relative_macs"} <= set(metrics)  # FID/KID and the search's cost source
        assert ("relative_latency" in metrics) == (candidate.id in final)  # measured on the front only
        assert validation["objectives"] == [metrics["feature_distance"]["value"], metrics["relative_macs"]["value"]]
        if candidate.schedule["steps"] != [{"cache": "full", "prune": 0.0}] * 5:
            assert metrics["mse"]["value"] != evaluation.metrics["mse"]["value"]  # other images: other seeds

    validated = review.validated_front(store, search_id)
    assert validated and {p.candidate.id for p in validated} <= final | baselines
    runner = CliRunner()
    shown = runner.invoke(main, ["front", str(search_id), "--validated", "--db", str(db)])
    assert shown.exit_code == 0, shown.output
    assert f"validated front: {len(validated)} points, each on 6 new images" in shown.output
    assert "relative_latency (measured)" in shown.output
    out = tmp_path / "schedule.json"
    exported = runner.invoke(main, ["export", str(search_id), "--pick", "best", "-o", str(out), "--db", str(db)])
    assert exported.exit_code == 0, exported.output
    provenance = json.loads(out.read_text())["provenance"]
    assert provenance["pick"] == "best of the validated front"
    assert provenance["candidate"] == min(validated, key=lambda p: p.objectives).candidate.id
    assert provenance["validation"]["metrics"]["mse"]["n"] == 6
