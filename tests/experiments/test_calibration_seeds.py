"""``experiments/calibration_seeds.py``: its two searches differ only in the calibration's seeds, and the front after
each evaluation is the front of those done so far."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from prunesched.search.config import SearchConfig

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("calibration_seeds", ROOT / "experiments" / "calibration_seeds.py")
seeds = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seeds)

ARGS = argparse.Namespace(images=4, population=6, generations=2)
PRESET = ROOT / "prunesched" / "search" / "presets" / "shapes-dit.toml"


def test_the_seeded_search_adds_only_the_presets_projected_seeds_and_neither_evaluates_its_calibration():
    data = SearchConfig.load(PRESET).to_dict()
    path = ROOT / "prunesched" / "search" / "presets" / "shapes-dit.calibration.json"
    plain, seeded = (seeds.search_config(data, ARGS, True, calibration) for calibration in (None, path))
    assert plain.calibration.calibration is None and seeded.calibration.seeds and not seeded.calibration.baselines
    assert seeded.calibration.thresholds == SearchConfig.load(PRESET).calibration.thresholds  # the preset's own
    assert plain.baseline_schedules() == seeded.baseline_schedules()  # the same baselines, the config's [baselines]
    assert set(plain.baseline_schedules()) == {f"F{f}B0 N={n}" for f in (1, 2) for n in (2, 3, 4)}
    projected = seeded.calibration.seed_genomes(seeded.space)
    assert len(projected) == 6 and seeded.seed_genomes()[:6] == projected and plain.seed_genomes()[:6] != projected
    for config in (plain, seeded):  # the budget and measures of the experiment, not the preset's
        assert (config.evaluator.images, config.proposer.population, config.proposer.generations) == (4, 6, 2)
        assert config.objectives == ("feature_distance_gmean", "relative_macs") and not config.validation.enabled


def test_the_front_after_each_evaluation_is_that_of_the_evaluations_so_far():
    rows = [("a", {}, (0.5, 0.5)), ("b", {}, None), ("c", {}, (0.4, 0.6)), ("d", {}, (0.3, 0.4))]
    assert [sorted(front) for front in seeds.prefix_fronts(rows)] == [["a"], ["a"], ["a", "c"], ["d"]]
