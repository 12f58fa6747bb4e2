"""``experiments/forecast_vs_reuse.py`` at toy size: every plan and interval at every forecast order, one cost per group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "forecast_vs_reuse.py"


def test_the_script_compares_forecast_orders_at_one_cost_per_plan_and_interval(tmp_path):
    out = tmp_path / "forecast.json"
    args = ["--model", "tiny-sd", "--images", "2", "--steps", "3", "--out", str(out)]
    env = {**os.environ, "PRUNESCHED_CACHE": str(tmp_path / "cache")}  # images and cost tables, not the user's cache
    subprocess.run([sys.executable, str(SCRIPT), *args], check=True, capture_output=True, timeout=900, env=env)
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [r["label"] for r in rows[:3]] == ["N=2, branch 0 (copy)", "N=2, branch 0 +f1", "N=2, branch 0 +f2"]
    assert len(rows) == 3 * 3 + 2 * 3 and rows[-1]["label"] == "N=3, reuse +f2"
    assert report["measured_with"]["settings"]["num_inference_steps"] == 3
    assert report["measured_with"]["settings"]["guidance_scale"] == 7.5  # the SD pipeline's default
    for start in range(0, len(rows), 3):
        group = [r["metrics"] for r in rows[start : start + 3]]
        assert len({m["relative_macs"]["value"] for m in group}) == 1, "the orders of a plan and interval cost the same"
    assert rows[0]["metrics"]["psnr"]["value"] != rows[1]["metrics"]["psnr"]["value"]
    assert "psnr_gain" not in rows[0] and rows[1]["psnr_gain"]["n"] == 2 and 0 <= rows[1]["images_improved"] <= 2
    table = out.with_suffix(".md").read_text()
    assert "| between full steps | relative MACs | psnr f0 | psnr f1 | psnr f2 | PSNR gain f1 (images better) |" in table
    assert "| N=3, reuse |" in table
    out.with_suffix(".md").unlink()
    subprocess.run([sys.executable, str(SCRIPT), *args, "--render"], check=True, capture_output=True, timeout=300, env=env)
    assert out.with_suffix(".md").read_text() == table, "--render rebuilds the tables from the JSON and the kept images"
