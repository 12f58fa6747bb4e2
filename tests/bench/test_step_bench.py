"""The step benchmark's mechanics on a tiny UNet (the real SD 1.5 run is `prunesched bench step`, see docs/benchmarks.md)."""

import json

from click.testing import CliRunner

from prunesched.bench.step import RELATIVE, StepBenchConfig, compose, run_step_bench
from prunesched.cli import main
from prunesched.models.tiny import tiny_sd_pipeline
from prunesched.runtime.paper_tables import dato_ours_b1


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


def test_compose_sums_the_cost_of_each_performed_step():
    schedule = dato_ours_b1()
    costs = {"full": {RELATIVE: 1.0}, "reuse": {RELATIVE: 0.0}}
    costs |= {f"dato@{r}": {RELATIVE: 0.75} for r in (0.3, 0.4, 0.5, 0.6, 0.7)}
    costs |= {f"dato@{r}/branch0": {RELATIVE: 0.125} for r in (0.3, 0.4, 0.5, 0.6, 0.7)}
    full, partial, reuse = (sum(1 for s in schedule.steps[1:] if s.cache == c) for c in ("full", 0, "reuse"))
    assert compose(schedule, costs) == 1.0 + 0.75 * full + 0.125 * partial
    assert (1 + full + partial + reuse) == 51


def test_cli_rejects_bad_numbers_with_exit_code_2():
    runner = CliRunner()
    result = runner.invoke(main, ["bench", "step", "--repeats", "0"])
    assert result.exit_code == 2 and "must be >= 1" in result.output
    result = runner.invoke(main, ["bench", "step", "--ratios", "0.3,x"])
    assert result.exit_code == 2 and "comma-separated numbers" in result.output
