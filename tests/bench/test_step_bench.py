"""The step benchmark's mechanics on a tiny UNet (the real SD 1.5 run is `prunesched bench step`, see docs/benchmarks.md)."""

import json

import pytest
import torch
from click.testing import CliRunner
from torch._dynamo.utils import counters

from prunesched.bench.paired_timing import RELATIVE
from prunesched.bench.step import StepBenchConfig, cost_table, run_step_bench
from prunesched.cli import main
from prunesched.evaluation.cost import labels
from prunesched.models.tiny import tiny_sd_pipeline
from prunesched.runtime.paper_tables import dato_ours_b1
from tests.runtime.helpers import two_level_unet


def test_bench_measures_every_configuration_and_its_peers():
    unet = tiny_sd_pipeline().unet
    config = StepBenchConfig(latent=8, batch=2, repeats=1, branches=(0, 1), e2e_latent=8)
    result = run_step_bench(config, log=lambda _m: None, unet=unet)
    json.dumps(result)  # JSON-ready
    steps, peers = result["steps"], result["peers"]
    assert {"full", "branch0", "branch1", "reuse"} <= set(steps)
    assert all(entry[RELATIVE] > 0 for entry in steps.values() if entry is not steps["reuse"])
    assert 0 < steps["dato@0.5/branch0"]["selection_share_of_step"] < 1, "partial steps prune their live slot"
    for method in ("sito", "dato", "random"):
        for ratio in config.ratios:
            entry = steps[f"{method}@{ratio}"]
            assert entry["median_s"] > 0 and 0 < entry["selection_share_of_step"] < 1
    assert {f"tomesd@{r}" for r in config.ratios} | {"deepcache/branch0", "deepcache/branch1"} == set(peers)
    table6 = result["dato_table6"]["end_to_end_at_latent"]
    assert table6["steps"] == 51 and table6["measured_s"] > 0 and table6["cpu_measured_all_full_s"] > 0
    assert set(result["goals"]) >= {"sito_selection_share_at_0.5", "branch0_share_of_full", "dato_table6_end_to_end_speedup"}
    assert result["meta"]["attention_processors"] and result["meta"]["timer"] == "time.perf_counter"
    assert "forward" not in vars(unet), "the benchmark leaves the UNet as it found it"


def test_table6_is_composed_by_the_cost_model_from_the_steps_dato_pruned_and_the_unpruned_ones():
    """The bench's prediction is the evaluation's composition (``CostTable.steps``) over its measured entries: the first
    step full, cache and full steps at their ratio, every reuse step at the reuse cost; another method's steps are not used."""
    schedule = dato_ours_b1()
    ratios = (0.3, 0.4, 0.5, 0.6, 0.7)
    costs = {"full": {"plan": "full@0.0", "method": None, RELATIVE: 1.0}, "reuse": {"plan": "reuse@0.0", "method": None, RELATIVE: 0.01}}
    costs |= {f"dato@{r}": {"plan": f"full@{r}", "method": "dato", RELATIVE: 0.75} for r in ratios}
    costs |= {f"sito@{r}": {"plan": f"full@{r}", "method": "sito", RELATIVE: 9.0} for r in ratios}
    costs |= {f"dato@{r}/branch0": {"plan": f"0@{r}", "method": "dato", RELATIVE: 0.125} for r in ratios}
    later = schedule.steps[1:]
    full, partial, reuse = (sum(1 for s in later if s.cache == c) for c in ("full", 0, "reuse"))
    assert (1 + full + partial + reuse) == 51 and schedule.steps[0].prune == 0 and all(s.prune for s in later if s.cache != "reuse")
    costs["branch0"] = {"plan": "0@0.0", "method": None, RELATIVE: 0.1}
    table = cost_table(costs, "dato")
    assert table.relative["0@0.0"] == 0.1 and table.relative["full@0.5"] == 0.75, "unpruned steps of any method, pruned ones of DaTo"
    assert table.steps(schedule) == pytest.approx(1.0 + 0.75 * full + 0.125 * partial + 0.01 * reuse)
    assert table.steps(schedule) == pytest.approx(sum(table.relative[name] for name in labels(schedule)))


def test_compile_times_the_cache_steps_eager_and_compiled():
    unet = two_level_unet()
    config = StepBenchConfig(latent=8, batch=2, repeats=2, branches=(0,), compile="eager")
    torch._dynamo.reset()
    counters.clear()
    result = run_step_bench(config, log=lambda _m: None, unet=unet)
    json.dumps(result)
    compiled = result["compiled"]
    assert set(result["steps"]) == set(compiled["steps"]) == {"full", "branch0", "reuse"}, "no pruning steps"
    assert [w["plan"] for w in compiled["first_round_s"]] == ["full@0.0", "0@0.0", "full@0.0", "reuse@0.0"]
    assert counters["stats"]["unique_graphs"] == 3, "the first full step, branch 0 and the next full step compile; no timed step does"
    assert set(compiled["over_eager"]) == {"full", "branch0"} and all(ratio > 0 for ratio in compiled["over_eager"].values())
    assert compiled["backend"] == "eager" and result["meta"]["config"]["compile"] == "eager"
    assert all(entry[RELATIVE] > 0 for entry in compiled["steps"].values())
    assert result["peers"] == {} and "dato_table6" not in result and set(result["goals"]) == {"branch0_share_of_full"}
    assert "forward" not in vars(unet)


def test_cli_rejects_bad_numbers_with_exit_code_2():
    runner = CliRunner()
    result = runner.invoke(main, ["bench", "step", "--repeats", "0"])
    assert result.exit_code == 2 and "must be >= 1" in result.output
    result = runner.invoke(main, ["bench", "step", "--ratios", "0.3,x"])
    assert result.exit_code == 2 and "comma-separated numbers" in result.output
    result = runner.invoke(main, ["bench", "step", "--compile", "inductr"])
    assert result.exit_code == 2 and "not a torch.compile backend: 'inductr'" in result.output
