"""``prunesched bench cat``: MACs counted on the meta device through the real runtime, latency on a tiny transformer."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from prunesched.bench.cat import PAPER_REDUCTION, CatBenchConfig, count_macs, run_cat_bench
from prunesched.cli import main
from prunesched.models.tiny import tiny_sd3_pipeline


def test_sd3_medium_at_the_papers_setting_has_the_papers_mac_reduction():
    """SD3-medium at 1024x1024 with CFG, counted without weights: a full step and a CAT step (t0 = 2 of 3 steps here);
    every full step and every CAT step after the first costs the same, so they compose the paper's 28 steps with t0 = 8."""
    macs = count_macs(CatBenchConfig(steps=3, t0=2), latent=128)
    full, cat = macs["full"][0], macs["cat"][2]
    assert macs["full"] == [full] * 3 and macs["cat"][:2] == [full, full]
    assert full / 2 / 1e12 == pytest.approx(4.45, rel=0.01)  # per image
    over_28_steps = 1 - (8 * full + 20 * cat) / (28 * full)
    assert over_28_steps == pytest.approx(PAPER_REDUCTION, rel=0.05)


def test_a_run_reports_macs_latency_and_goals():
    tiny = dict(tiny_sd3_pipeline().transformer.config)  # SD3's layout at toy size, so the timed part takes seconds
    config = CatBenchConfig(transformer=tiny, latent=16, latency_latent=16, text_tokens=7, steps=6, t0=2, repeats=1, profile=True)
    data = run_cat_bench(config)
    json.dumps(data)  # it is written as JSON
    per_step = data["macs_per_step"]
    assert per_step["cat"][:2] == per_step["full"][:2] and all(c < f for c, f in zip(per_step["cat"][2:], per_step["full"][2:]))
    assert 0 < data["mac_reduction"] < 1
    assert len(data["latency"]["cat_step"]["repeats_s"]) == 1  # one timed pair after the warm-up
    assert data["latency"]["denoising_speedup_at_this_latent"] > 0
    profile = data["latency"]["cat_step"]["profile"]
    assert profile["step"]["events"] > profile["full"]["events"], "a CAT step runs its selection, gathers and scatters besides the blocks"
    assert all(profile[call]["total_ms"] > 0 and profile[call]["top"][0]["self_ms"] > 0 for call in ("full", "step"))
    assert "aten::scatter" in profile["only_in_step"], "the recomputed tokens' outputs and keys/values are scattered into the caches"
    assert set(data["goals"]) == {"mac_reduction_within_5_percent_of_paper", "latency_reduction_at_least_80_percent_of_mac_reduction"}


def test_alpha_one_recomputes_everything_and_reports_no_latency_ratio():
    tiny = dict(tiny_sd3_pipeline().transformer.config)
    data = run_cat_bench(CatBenchConfig(transformer=tiny, latent=16, latency_latent=16, text_tokens=7, steps=4, t0=2, alpha=1.0, repeats=1))
    assert data["mac_reduction"] == 0  # prune 1 - alpha = 0: every step is a full one
    assert data["goals"]["latency_reduction_at_least_80_percent_of_mac_reduction"]["value"] is None  # no ratio to a zero reduction


@pytest.mark.parametrize("option, value", [("--latent", "0"), ("--alpha", "1.5"), ("--t0", "28")])
def test_the_command_refuses_bad_settings_before_any_work(tmp_path, option, value):
    result = CliRunner().invoke(main, ["bench", "cat", option, value, "-o", str(tmp_path / "x.json")])
    assert result.exit_code == 2 and option in result.output
    assert not (tmp_path / "x.json").exists()
