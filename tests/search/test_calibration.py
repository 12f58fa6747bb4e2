"""The [calibration] table: a calibration's threshold schedules evaluated as baselines and seeded into the first
generation (projected to the space's nearest genome), and refused where it was recorded on another model or loop."""

from __future__ import annotations

import json

import pytest

from prunesched.errors import ConfigError
from prunesched.runtime.methods import method_from_dict
from prunesched.runtime.schedule import BlockCache, Schedule, StepPlan
from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import launch
from prunesched.search.spaces import BlockSpace, DatoSpace, genome_of, nearest_genome
from prunesched.storage import Store
from prunesched.storage.store import BASELINE_GENERATION
from tests.calibration.made import made
from tests.calibration.test_thresholds import CHANGE
from tests.search.tiny import tiny_sd_search

F1B0, F0B0 = BlockCache(1, 0), BlockCache(0, 0)


def schedule(*caches, method="dato") -> Schedule:
    return Schedule(steps=tuple(StepPlan(c) for c in caches), method=method_from_dict(method))


def test_a_schedule_the_space_holds_is_its_own_genome_and_another_goes_to_the_nearest():
    space = DatoSpace(steps=5, caches=("reuse", 0, "full"), ratios=(0.0, 0.5))
    held = schedule("full", 0, "reuse", "full", 0)
    assert nearest_genome(space, held) == genome_of(space, held)
    # on a DiT, F1B0 computes 1 block: nearer depth 0 (the first and last block, 2) than reuse; F0B0 is nearest reuse
    fbcache = schedule("full", F1B0, F1B0, "full", F1B0)
    assert space.decode(nearest_genome(space, fbcache)).steps == (*held.steps[:2], StepPlan(0), *held.steps[3:])
    teacache = schedule("full", F0B0, F0B0, "full", "full")
    assert [s.cache for s in space.decode(nearest_genome(space, teacache)).steps] == ["full", "reuse", "reuse", "full", "full"]
    # where the space forecasts, a threshold method's copy stays a copy: the projection keeps the order too
    forecasting = DatoSpace(steps=5, caches=("reuse", 0, "full"), ratios=(0.0, 0.5), forecasts=(1, 0))
    assert {s.forecast for s in forecasting.decode(nearest_genome(forecasting, fbcache)).steps} == {0}
    # the blocks space keeps which steps are full (a full step every 3 in both phases), then the fewest blocks
    blocks = BlockSpace(steps=6, phases=2, firsts=(1, 4), lasts=(0, 1), intervals=(1, 2, 3))
    projected = blocks.decode(nearest_genome(blocks, schedule("full", F0B0, F0B0, "full", F0B0, F0B0, method="cat")))
    assert [s.cache for s in projected.steps] == ["full", F1B0, F1B0, "full", F1B0, F1B0]


def calibrated(tmp_path, calibration, **table):
    """The tiny-SD test search (PNDM at 4 steps: 5 loop iterations) with this calibration in its [calibration] table."""
    path = calibration.save(tmp_path / "calibration.json")
    return tiny_sd_search(tmp_path / "cache", calibration={"file": str(path), **table}), path


def test_the_threshold_schedules_are_named_baselines_and_the_stored_config_needs_no_file(tmp_path):
    config, path = calibrated(tmp_path, made(CHANGE[:5], CHANGE[:5], [1.0] * 5), thresholds={"teacache": [0.0, 0.07]})
    schedules = config.baseline_schedules()
    assert [name for name in schedules if name.startswith("TeaCache")] == ["TeaCache 0", "TeaCache 0.07"]
    assert [s.cache for s in schedules["TeaCache 0.07"].steps] == ["full", "reuse", "reuse", "full", "full"]
    assert schedules["TeaCache 0.07"].method == config.space.method  # the space's token method, so the space holds it
    path.unlink()
    again = SearchConfig.from_dict(json.loads(json.dumps(config.to_dict())))  # as search resume reads it back
    assert {n: s.hash for n, s in again.baseline_schedules().items()} == {n: s.hash for n, s in schedules.items()}
    assert again.seed_genomes() == config.seed_genomes()


def test_a_calibration_of_another_model_or_loop_or_a_bad_table_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^\[calibration\] file: the calibration was recorded on 'tiny-sd3'"):
        calibrated(tmp_path, made(CHANGE[:5], CHANGE[:5], [1.0] * 5, model="tiny-sd3"))
    with pytest.raises(ConfigError, match=r"covers 8 loop iterations .* but the search's schedules have 5"):
        calibrated(tmp_path, made(CHANGE, CHANGE, [1.0] * 8))
    with pytest.raises(ConfigError, match=r"\[calibration\] thresholds must be a table with some of first_block, teacache, magcache"):
        calibrated(tmp_path, made(CHANGE[:5], CHANGE[:5], [1.0] * 5), thresholds={"fbc": [0.1]})
    with pytest.raises(ConfigError, match=r"\[calibration\] thresholds teacache must be a number from 0 to 100, got -1"):
        calibrated(tmp_path, made(CHANGE[:5], CHANGE[:5], [1.0] * 5), thresholds={"teacache": [-1]})
    with pytest.raises(ConfigError, match=r"cannot read calibration file at 'missing\.json'"):
        tiny_sd_search(tmp_path / "cache", calibration={"file": "missing.json"})


@pytest.mark.usefixtures("ray_local")
def test_a_search_stores_the_calibration_baselines_and_starts_from_the_projected_seeds(tmp_path):
    calibration = made(CHANGE, CHANGE, [1.0] * 8, architecture="dit", model="a-dit")
    path = calibration.save(tmp_path / "calibration.json")
    config = SearchConfig.from_dict(
        {
            "name": "calibrated",
            "space": {"kind": "dato", "steps": 8, "caches": ["reuse", 0, "full"], "ratios": [0.0, 0.5], "method": {"name": "cat"}},
            "evaluator": {"kind": "synthetic"},  # no model: only the loop length is checked
            "proposer": {"population": 4, "generations": 1},
            "baselines": {"enabled": False},
            "calibration": {"file": str(path), "thresholds": {"first_block": [0.07, 99], "teacache": [0.07]}},
            "dispatch": {"workers": 1, "timeout_s": 120},
        }
    )
    search_id = launch(config, tmp_path / "search.db")
    store = Store(tmp_path / "search.db")
    expected = config.baseline_schedules()
    stored = {c.baseline: (c, e) for c, e in store.evaluations(search_id) if c.baseline is not None}
    assert set(stored) == set(expected) == {"FBCache 0.07", "FBCache 99", "TeaCache 0.07"}
    for name, (candidate, evaluation) in stored.items():
        assert candidate.schedule_hash == expected[name].hash and candidate.generation_born == BASELINE_GENERATION
        assert evaluation.status == "done"
    # F1B0 and F0B0 steps are not in this space: the seeds are their nearest genomes, the first members of generation 0
    seeds = [config.space.decode(genome).hash for genome in config.calibration.seed_genomes(config.space)]
    assert len(seeds) == 3 and not set(seeds) & {s.hash for s in expected.values()}
    members = {c.schedule_hash for c, _ in store.candidates_by_id(store.generation(search_id, 0).members)}
    assert set(seeds) <= members


def test_a_config_files_relative_calibration_is_found_next_to_it(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    made(CHANGE, CHANGE, [1.0] * 8, architecture="dit", model="a-dit").save(folder / "calibration.json")
    (folder / "search.toml").write_text(
        '[space]\nkind = "dato"\nsteps = 8\ncaches = ["reuse", 0, "full"]\nmethod = { name = "cat" }\n'
        '[evaluator]\nkind = "synthetic"\n[calibration]\nfile = "calibration.json"\nthresholds = { teacache = [0.07] }\n'
    )
    monkeypatch.chdir(tmp_path)  # not the config's folder: a path relative to the working directory would miss it
    assert list(SearchConfig.load("configs/search.toml").baseline_schedules())[-1] == "TeaCache 0.07"
