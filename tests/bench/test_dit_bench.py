"""``prunesched bench dit``: block caching's MACs counted through the runtime on the meta device, latency on tiny DiTs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from diffusers import FluxTransformer2DModel, PixArtTransformer2DModel, SD3Transformer2DModel

from prunesched import BlockCache, Schedule, StepPlan
from prunesched.bench.dit import CACHE_DIT_FLUX, DBCACHE_M_LIKE, MODELS, CacheRule, DitBenchConfig, DitModel, run_dit_bench
from prunesched.cli import main
from prunesched.models.tiny import tiny_flux_pipeline, tiny_pixart_pipeline, tiny_sd3_pipeline


def test_flux1_dev_counts_cache_dits_full_model_and_an_f1b0_step_runs_one_of_its_57_blocks():
    """FLUX.1-dev at 1024x1024 (4,096 image and 512 text tokens, one call a step), a full step and an F1B0 step through
    prunesched.apply on the meta device: 50 full steps at 2 FLOPs a MAC are cache-dit's published 3726.87 T within 5 %,
    and the cached step costs one block (all 57 cost about the same) and the embeddings."""
    full, cached = MODELS["flux1-dev"].loop().count_macs(Schedule(steps=(StepPlan(), StepPlan(BlockCache(1, 0)))))
    assert 2 * 50 * full == pytest.approx(CACHE_DIT_FLUX["full"], rel=0.05)
    assert full / 57 < cached < 1.05 * full / 57


def test_a_rule_makes_warm_up_and_every_nth_step_full_and_mixes_its_caches_in_order():
    mix = CacheRule((BlockCache(8, 0), 1, BlockCache(1, 0)), interval=4, warmup=4)
    f8, f1 = BlockCache(8, 0), BlockCache(1, 0)
    assert [s.cache for s in mix.schedule(14).steps] == ["full"] * 5 + [f8, f8, f8, "full", 1, 1, f1, "full", f1]
    assert mix.name == "F8B0 > depth 1 (F2B2) > F1B0 W4 N4"
    assert [s.cache for s in DBCACHE_M_LIKE.schedule(50).steps].count("full") == 12  # as DBCache(M)'s published count implies


def test_a_run_counts_every_dit_kind_through_the_runtime_and_times_cached_steps():
    tiny = {
        "tiny-sd3": DitModel("SD3", SD3Transformer2DModel, dict(tiny_sd3_pipeline(layers=5).transformer.config), 4, 2, 7, latent=16),
        "tiny-pixart": DitModel("PixArt", PixArtTransformer2DModel, dict(tiny_pixart_pipeline(layers=5).transformer.config), 4, 2, 7, 16),
        "tiny-flux": DitModel("Flux", FluxTransformer2DModel, dict(tiny_flux_pipeline(layers=(2, 3)).transformer.config), 4, 1, 7, 16),
    }
    rule = CacheRule((BlockCache(1, 0), 1), interval=2)  # full, F1B0, full, depth 1
    config = DitBenchConfig(models=tiny, latency={"tiny-sd3": tiny["tiny-sd3"]}, rules=(rule,), latency_latent=16, repeats=1)
    data = run_dit_bench(config)
    json.dumps(data)  # it is written as JSON
    for counted in data["macs"].values():
        step = counted["macs_per_step"]
        assert counted["blocks"] == 5 and counted["full_steps"] == {"full": 4, rule.name: 2}
        assert step["F1B0@0.0"] < step["1@0.0"] < step["full@0.0"]  # 1 of 5 blocks, then 4 of 5 (F2B2), then all
        assert counted["macs"][rule.name] == 2 * step["full@0.0"] + step["F1B0@0.0"] + step["1@0.0"]
    timed = data["latency"]["tiny-sd3"]
    assert set(timed["steps"]) == {"F1B0@0.0", "1@0.0"} and all(len(s["time"]["repeats_s"]) == 1 for s in timed["steps"].values())
    assert timed["denoising_speedup_at_this_size"][rule.name]["by_macs"] == pytest.approx(
        4 / (2 + timed["steps"]["F1B0@0.0"]["macs_relative_to_full"] + timed["steps"]["1@0.0"]["macs_relative_to_full"])
    )
    assert len(data["goals"]) == 2  # one latency goal per timed kind; only FLUX.1-dev has a published count to meet


@pytest.mark.parametrize("option, value", [("--repeats", "-1"), ("--latency-latent", "0"), ("--model", "sd15")])
def test_the_command_refuses_bad_settings_before_any_work(tmp_path, option, value):
    result = CliRunner().invoke(main, ["bench", "dit", option, value, "-o", str(tmp_path / "x.json")])
    assert result.exit_code == 2 and option in result.output
    assert not (tmp_path / "x.json").exists()
