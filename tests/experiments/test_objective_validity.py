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
    assert set(summary) == {"feature_distance_gmean", "feature_distance", "fid", "kid", "mse"}
    assert -1 <= summary["feature_distance"]["repeatability"] <= 1
    for row in summary.values():  # NaN where a toy measure is constant (e.g. no image recognised at 3 steps)
        assert all(math.isnan(value) or -1 <= value <= 1 for value in row.values())
    assert "| `feature_distance` |" in done.stdout  # the docs table
    for row in result["schedules"]:  # every image's value kept, and the stored mean is theirs
        for run in ("first", "second"):
            values = row[run]["feature_distance"]["per_image"]
            assert len(values) == 3 and math.isclose(sum(values) / 3, row[run]["feature_distance"]["value"], rel_tol=1e-9)
    assert set(result["summary"]["statistics"]) == {
        f"{o} {s}" for o in ("feature_distance", "mse") for s in ("mean", "median", "geometric mean")
    }
    assert result["summary"]["statistics"]["mse mean"]["repeatability"] == summary["mse"]["repeatability"]
    assert result["summary"]["statistics"]["feature_distance geometric mean"] == summary["feature_distance_gmean"]
    assert "| feature_distance median |" in done.stdout


def test_reusing_the_large_set_repeats_the_other_runs_exactly(tmp_path):
    first, again = tmp_path / "first.json", tmp_path / "again.json"
    args = ["--images", "2", "--large", "3", "--steps", "3", "--random", "0", "--limit", "2"]
    subprocess.run([sys.executable, str(SCRIPT), *args, "--out", str(first)], check=True, capture_output=True, timeout=900)
    subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--out", str(again), "--reuse-large", str(first)], check=True, capture_output=True, timeout=900
    )
    before, after = (json.loads(p.read_text()) for p in (first, again))
    assert after["large_reused"] and not before["large_reused"]
    assert after["schedules"] == before["schedules"]  # generation is deterministic, so the reused large set still fits
    other = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--images",
            "2",
            "--large",
            "5",
            "--steps",
            "3",
            "--limit",
            "1",
            "--out",
            str(tmp_path / "x.json"),
            "--reuse-large",
            str(first),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert other.returncode == 2 and "measured with other settings" in other.stderr
