"""``prunesched bench atedm``: MACs counted on the meta device through the real runtime, latency on a tiny UNet."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from prunesched.bench.atedm import AtedmBenchConfig, count_macs, run_atedm_bench
from prunesched.cli import main
from prunesched.models.tiny import tiny_sdxl_pipeline


def test_sdxl_at_the_papers_budget_has_the_papers_mac_count():
    """SDXL's architecture at 1024x1024 (latent 128, one image with CFG), counted without weights or compute."""
    macs = count_macs(AtedmBenchConfig(), latent=128)
    assert macs["full"] / 1e12 == pytest.approx(6.7, rel=0.02)  # the paper's 6.7 T per step
    assert macs["atedm"] / 1e12 == pytest.approx(4.1, rel=0.02)  # and 4.1 T at rho = 63 %
    assert macs["atedm"] < macs["atedm_dsap_held"] < macs["full"]


def test_a_run_reports_macs_the_dsap_budget_latency_and_goals():
    tiny = dict(tiny_sdxl_pipeline().unet.config)  # SDXL's layout at toy size, so the timed part takes seconds
    # one G-WPR iteration: on the meta device each operation costs Python time, and the MAC count is checked above
    data = run_atedm_bench(
        AtedmBenchConfig(unet=tiny, latent=16, latency_latent=16, repeats=1, steps=10, tau=3, iterations=1, profile=True)
    )
    json.dumps(data)  # it is written as JSON
    assert 0 < data["mac_reduction"] < 1
    assert data["dsap"]["mac_reduction_at_the_same_ratio"] < data["mac_reduction"]
    assert data["dsap"]["ratio_for_the_same_budget"] > 0.63
    assert set(data["latency"]["steps"]) == {"atedm", "atedm_dsap_held"}
    assert all(len(step["repeats_s"]) == 1 for step in data["latency"]["steps"].values())  # one timed pair after the warm-up
    profile = data["latency"]["steps"]["atedm"]["profile"]
    assert "aten::_softmax" in profile["only_in_step"], "AT-EDM's scoring forms the attention map, which the fused full step never does"
    assert all(profile[call]["top"][0]["self_ms"] > 0 for call in ("full", "step"))
    assert set(data["goals"]) == {"mac_reduction_within_5_percent_of_paper", "latency_reduction_at_least_80_percent_of_mac_reduction"}


def test_the_command_refuses_a_bad_size_before_any_work(tmp_path):
    result = CliRunner().invoke(main, ["bench", "atedm", "--latent", "0", "-o", str(tmp_path / "x.json")])
    assert result.exit_code == 2 and "--latent" in result.output
    assert not (tmp_path / "x.json").exists()
