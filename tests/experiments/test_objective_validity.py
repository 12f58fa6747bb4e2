"""``experiments/objective_validity.py`` at toy size: real evaluations of the shipped model in, rank correlations out."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "objective_validity.py"


def test_the_study_scores_each_schedule_three_times_and_correlates_the_objectives(tmp_path):
    out = tmp_path / "validity.json"
    args = ["--images", "3", "--large", "4", "--steps", "3", "--random", "1", "--limit", "4", "--out", str(out)]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], check=True, capture_output=True, text=True, timeout=900)
    result = json.loads(out.read_text())
    assert [row["name"] for row in result["schedules"]] == [f"DeepCache N={n} branch 0" for n in (2, 3, 4, 5)]
    for row in result["schedules"]:
        assert row["first"]["feature_distance"]["n"] == row["second"]["feature_distance"]["n"] == 3
        assert row["large"]["caption_accuracy"]["n"] == 4 and "fid" in row["first"] and "fid" not in row["large"]
    summary = result["summary"]["objectives"]
    assert set(summary) == {"feature_distance", "fid", "kid", "mse"}
    assert -1 <= summary["feature_distance"]["repeatability"] <= 1
    for row in summary.values():  # NaN where a toy measure is constant (e.g. no image recognised at 3 steps)
        assert all(math.isnan(value) or -1 <= value <= 1 for value in row.values())
    assert "| `feature_distance` |" in done.stdout  # the docs table
