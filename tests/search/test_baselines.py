"""Baselines: the hand-made schedules every search measures, with exactly its candidates' settings, seeded into its
first generation and compared with what the search found."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from prunesched.cli import main
from prunesched.errors import ConfigError
from prunesched.evaluation.evaluate import PipelineEvaluator
from prunesched.runtime.methods import method_from_dict
from prunesched.runtime.schedule import Schedule, StepPlan
from prunesched.search import review
from prunesched.search.baselines import BaselinesConfig, genome_of
from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import launch
from prunesched.search.evaluators import SyntheticEvaluator
from prunesched.search.spaces import BlockSpace, DatoSpace
from prunesched.storage import Store
from prunesched.storage.store import BASELINE_GENERATION
from tests.search.tiny import tiny_sd_search

SPACE = DatoSpace(steps=11, ratios=(0.0, 0.3, 0.4, 0.5, 0.6, 0.7))


def test_the_default_baselines_are_deepcache_uniform_pruning_and_ours_b1_at_the_loop_length():
    schedules = BaselinesConfig().schedules(SPACE)
    assert list(schedules) == [
        *(f"DeepCache N={n} branch {b}" for b in (0, 1) for n in (2, 3, 4, 5)),
        "dato uniform 0.3",
        "dato uniform 0.5",
        "dato uniform 0.7",
        "DaTo Ours-b1",
    ]
    assert all(len(s) == 11 and s.method == SPACE.method for s in schedules.values())
    assert schedules["DeepCache N=3 branch 1"].steps[:4] == (StepPlan("full"), StepPlan(1), StepPlan(1), StepPlan("full"))
    assert schedules["dato uniform 0.5"].steps == (StepPlan("full", 0.5),) * 11
    # the space holds DeepCache at branch 0 and Ours-b1 (its ratios, a reuse step's ratio canonically 0), not branch 1
    held = {name for name, schedule in schedules.items() if genome_of(SPACE, schedule) is not None}
    assert held == {*(f"DeepCache N={n} branch 0" for n in (2, 3, 4, 5)), "DaTo Ours-b1"}


def test_ours_b1_needs_a_dato_space_and_bad_tables_are_refused():
    assert "DaTo Ours-b1" not in BaselinesConfig().schedules(DatoSpace(steps=11, method=method_from_dict("sito")))
    with pytest.raises(ConfigError, match=r"\[baselines\] deepcache_intervals must be an integer from 1"):
        BaselinesConfig(deepcache_intervals=(0,))
    with pytest.raises(ConfigError, match=r"\[baselines\] uniform_ratios must be a number from 0 to 0.99"):
        BaselinesConfig(uniform_ratios=(1.5,))
    with pytest.raises(ConfigError, match="unknown key 'intervals' in \\[baselines\\]"):
        SearchConfig.from_dict({**SearchConfig.default().to_dict(), "baselines": {"intervals": [2]}})


@pytest.mark.usefixtures("ray_local")
def test_baselines_are_stored_seeded_and_compared_in_a_real_search(tmp_path):
    db = tmp_path / "search.db"
    config = SearchConfig.from_dict(
        {
            "name": "with-baselines",
            "space": {"kind": "dato", "steps": 11, "ratios": [0.0, 0.3, 0.4, 0.5, 0.6, 0.7]},
            "evaluator": {"kind": "synthetic"},
            "proposer": {"population": 8, "generations": 3},
            "dispatch": {"workers": 2, "timeout_s": 120},
        }
    )
    search_id = launch(config, db)
    store = Store(db)
    expected = config.baselines.schedules(config.space)
    stored = {c.baseline: (c, e) for c, e in store.evaluations(search_id) if c.baseline is not None}
    assert set(stored) == set(expected)
    reference = SyntheticEvaluator()
    for name, (candidate, evaluation) in stored.items():
        assert candidate.schedule_hash == expected[name].hash and candidate.generation_born == BASELINE_GENERATION
        assert evaluation.metrics == reference.evaluate(expected[name])  # the candidates' evaluator, unchanged
    # the first generation starts from the baselines the space holds: the memo serves them, so they are its members
    first = set(store.generation(search_id, 0).members)
    held = {stored[name][0].id for name, s in expected.items() if genome_of(config.space, s) is not None}
    assert held and held <= first

    comparisons = {row.name: row for row in review.baselines(store, search_id)}
    assert set(comparisons) == set(expected)
    searched = [(c, e) for c, e in store.evaluations(search_id, status="done") if c.baseline is None]
    for row in comparisons.values():
        cheaper = [e for _, e in searched if e.objective_1 <= row.baseline.objectives[1]]
        if not cheaper:
            assert row.nearest is None and row.difference is None and not row.dominated
            continue
        assert row.nearest.evaluation.objective_0 == min(e.objective_0 for e in cheaper)
        assert row.difference == pytest.approx(row.nearest.objectives[0] - row.baseline.objectives[0])
        assert row.dominated == (row.difference < 0)  # one synthetic value, no interval: beaten means better
    assert any(row.dominated for row in comparisons.values())  # the search beats some hand-made schedule

    shown = CliRunner().invoke(main, ["baselines", str(search_id), "--db", str(db)])
    assert shown.exit_code == 0, shown.output
    assert f"search {search_id}: {len(expected)} baselines" in shown.output and "DeepCache N=3 branch 1" in shown.output


@pytest.mark.usefixtures("ray_local")
def test_baselines_of_a_pipeline_search_are_evaluated_with_the_candidates_settings(tmp_path):
    config = tiny_sd_search(
        tmp_path / "cache",
        baselines={"deepcache_intervals": [2], "deepcache_branches": [0], "uniform_ratios": [0.5], "dato_ours_b1": False},
    )
    db = tmp_path / "search.db"
    search_id = launch(config, db)
    rows = Store(db).evaluations(search_id)
    baselines = {c.baseline: e for c, e in rows if c.baseline is not None}
    assert set(baselines) == {"DeepCache N=2 branch 0", "dato uniform 0.5"}
    evaluator = PipelineEvaluator(config.evaluator)  # the search's own settings, evaluated here once more
    schedules = config.baselines.schedules(config.space)
    for name, evaluation in baselines.items():
        again = evaluator.evaluate(Schedule.from_dict(schedules[name].to_dict()))
        for metric in ("mse", "psnr", "ssim", "macs", "relative_macs"):  # same images, same seeds, same counts
            stored, here = evaluation.metrics[metric], again[metric]
            # equal up to float summation order: a Ray actor runs torch on one thread, this process on several
            assert stored["n"] == here["n"] and stored["value"] == pytest.approx(here["value"], rel=1e-3)
    candidates = [e for c, e in rows if c.baseline is None]
    assert candidates and all(e.metrics["mse"]["n"] == baselines["dato uniform 0.5"].metrics["mse"]["n"] == 2 for e in candidates)


def test_a_cat_space_on_a_dit_gets_no_deepcache_baselines():
    space = DatoSpace(steps=4, caches=("reuse", "full"), ratios=(0.5, 0.7), method=method_from_dict("cat"))
    assert list(BaselinesConfig().schedules(space)) == ["cat uniform 0.3", "cat uniform 0.5", "cat uniform 0.7"]


def test_a_blocks_space_gets_block_cache_baselines_at_the_deepcache_intervals_and_holds_them():
    space = BlockSpace(steps=8, phases=2, firsts=(1, 8), lasts=(0,), intervals=(1, 2, 3, 4, 5))
    schedules = BaselinesConfig(uniform_ratios=(0.5,)).schedules(space)
    assert list(schedules) == [*(f"{name} N={n}" for name in ("F1B0", "F8B0") for n in (2, 3, 4, 5)), "cat uniform 0.5"]
    assert [str(s.cache) for s in schedules["F8B0 N=3"].steps] == ["full", "F8B0", "F8B0"] * 2 + ["full", "F8B0"]
    assert genome_of(space, schedules["F1B0 N=2"]) is not None  # the phases restart their interval: 8 = 4 + 4 steps
    with pytest.raises(ConfigError, match="block_caches must name block caches like F8B0"):
        BaselinesConfig(block_caches=("first8",))
