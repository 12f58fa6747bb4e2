"""Reviewing searches: the HTML report of a real search on the shipped shapes model (opened in headless
Chromium), history filters, fronts compared, and the Optuna mirror read back through Optuna's API."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from prunesched.cli import main
from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import launch
from prunesched.storage import Store
from tests.search.fakes import FailingEvaluator

pytestmark = pytest.mark.usefixtures("ray_local")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def shapes_search(tmp_path_factory) -> Path:
    """A real, small search on the shapes model: 2 generations of 4 schedules, 4 images each, FID to the full model."""
    db = tmp_path_factory.mktemp("shapes") / "search.db"
    launch(
        SearchConfig.from_dict(
            {
                "name": "shapes-small",
                "seed": 0,
                "objectives": ["fid", "relative_latency"],
                "space": {"kind": "dato", "steps": 6},
                "evaluator": {
                    "kind": "pipeline",
                    "model": "shapes",
                    "prompts": {"kind": "shapes"},
                    "images": 4,
                    "num_inference_steps": 5,
                    "reference": "model",
                    "repeats": 1,
                },
                "proposer": {"population": 4, "generations": 2},
                "dispatch": {"workers": 2, "timeout_s": 300},
            }
        ),
        db,
    )
    return db


def synthetic_search(db: Path, name: str, seed: int, log: Path) -> int:
    """A synthetic search (instant) in which every schedule that reuses at iteration 1 fails."""
    config = SearchConfig.from_dict(
        {
            "name": name,
            "seed": seed,
            "space": {"kind": "dato", "steps": 8},
            "evaluator": {"kind": "synthetic"},
            "proposer": {"population": 8, "generations": 3},
            "dispatch": {"workers": 2, "timeout_s": 120, "retries": 0},
        }
    )
    return launch(config, db, factory=lambda: FailingEvaluator(log))


def saturated_share(png: Path) -> float:
    """The share of a screenshot's pixels that are clearly coloured: plots and samples are, text and background are not."""
    hsv = np.asarray(Image.open(png).convert("HSV"), dtype=np.float32)
    return float(((hsv[..., 1] > 80) & (hsv[..., 2] > 40)).mean())


def screenshot(page: Path, out: Path) -> Path:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("PRUNESCHED_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed but PRUNESCHED_REQUIRE_BROWSER is set (CI installs it: apt-get install chromium)")
        pytest.skip("headless Chromium not installed (apt-get install chromium); CI installs it and requires this test")
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--proxy-server=127.0.0.1:9",
            "--hide-scrollbars",
            f"--screenshot={out}",
            "--window-size=1200,4000",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


def test_the_report_of_a_real_search_is_one_offline_page_that_chromium_renders_with_its_plots_and_samples(shapes_search, tmp_path):
    page, pngs = tmp_path / "report.html", tmp_path / "plots"
    code, output = run("report", "1", "-o", page, "--png", pngs, "--images", "3", "--db", shapes_search)
    assert code == 0, output

    html = page.read_text()
    store = Store(shapes_search)
    front = store.generation(1, None).front
    assert "Search 1: shapes-small" in html and "shapes-small" in html and '"model": "shapes"' in html
    sources = re.findall(r"src='([^']*)'", html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)  # nothing to fetch
    assert not re.search(r"(href|src)=['\"]?https?:", html)
    # evaluations, fronts, the validated front against the baselines, hypervolume, schedule strips, then the full
    # model's samples and one row per front point
    assert len(sources) == 5 + 1 + len(front)
    assert all(f"<td>{candidate}</td>" in html for candidate in front)
    assert sorted(p.name for p in pngs.iterdir()) == ["evaluations.png", "fronts.png", "hypervolume.png", "schedules.png", "validated.png"]

    shot = saturated_share(screenshot(page, tmp_path / "page.png"))
    blank = tmp_path / "blank.html"  # the same page with every picture removed: what a page whose images failed looks like
    blank.write_text(re.sub(r"src='data:[^']*'", "src=''", html))
    without = saturated_share(screenshot(blank, tmp_path / "blank.png"))
    assert shot > 0.03 and without < 0.005, (shot, without)


def test_history_filters_by_metric_range_and_refuses_a_malformed_range(tmp_path):
    db = tmp_path / "s.db"
    synthetic_search(db, "a", 1, tmp_path / "log")
    code, output = run("history", "--search", "1", "--status", "done", "--range", "cost:2:4.5", "--json", "--db", db)
    assert code == 0, output
    rows = json.loads(output)
    everything = [e for _, e in Store(db).evaluations(1, status="done")]
    assert 0 < len(rows) < len(everything)
    assert len(rows) == sum(2 <= e.metrics["cost"]["value"] <= 4.5 for e in everything)
    code, output = run("history", "--search", "1", "--range", "cost::3", "--range", "error:1:", "--json", "--db", db)
    assert code == 0 and all(r["metrics"]["cost"]["value"] <= 3 and r["metrics"]["error"]["value"] >= 1 for r in json.loads(output))

    before = db.read_bytes()
    code, output = run("history", "--search", "1", "--range", "cost:low:3", "--db", db)
    assert code == 2 and "'cost:low:3' is not METRIC:LOW:HIGH" in output and output.count("\n") == 1
    assert db.read_bytes() == before


def test_fronts_of_several_searches_are_compared_in_one_plot(tmp_path):
    db = tmp_path / "s.db"
    for seed in (1, 2):
        synthetic_search(db, f"seed-{seed}", seed, tmp_path / "log")
    code, output = run("compare", "1", "2", "-o", tmp_path / "fronts.png", "--db", db)
    assert code == 0, output
    assert Image.open(tmp_path / "fronts.png").size[0] > 500
    code, output = run("compare", "1", "--db", db)
    assert code == 2 and "compare needs two or more search ids, got 1" in output
    code, output = run("compare", "1", "7", "--db", db)
    assert code == 2 and "7" in output and output.count("\n") == 1


def test_the_optuna_mirror_has_every_evaluation_as_a_trial_and_the_front_as_its_pareto_set(tmp_path):
    import optuna

    db, storage = tmp_path / "s.db", f"sqlite:///{tmp_path / 'optuna.db'}"
    search_id = synthetic_search(db, "mirrored", 4, tmp_path / "log")
    before = db.read_bytes()
    for _ in range(2):  # a second mirror replaces the first
        code, output = run("export-optuna", search_id, "--storage", storage, "--db", db)
        assert code == 0, output
    assert db.read_bytes() == before

    store = Store(db)
    done, failed = store.evaluations(search_id, status="done"), store.evaluations(search_id, status="failed")
    assert failed  # the fake fails every schedule that reuses at iteration 1
    study = optuna.load_study(study_name="prunesched-1-mirrored", storage=storage)
    assert optuna.study.get_all_study_names(storage) == ["prunesched-1-mirrored"]
    assert study.metric_names == ["error", "cost"]
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == len(done) and states.count(optuna.trial.TrialState.FAIL) == len(failed)
    assert {t.user_attrs["candidate"] for t in study.best_trials} == set(store.generation(search_id).front)
    trial = next(t for t in study.trials if t.user_attrs["candidate"] == done[0][0].id)
    assert trial.values == [done[0][1].objective_0, done[0][1].objective_1]
    assert [trial.params[f"step{i:03d}_cache"] for i in range(8)] == [str(s["cache"]) for s in done[0][0].schedule["steps"]]
    assert "step000_forecast" not in trial.params, "a search without forecast steps keeps the parameters it always had"


def test_schedule_strips_order_block_caches_by_the_blocks_they_compute():
    """A DiT front mixes full steps, block caches and reuse: the legend runs from the most computed to the least."""
    from prunesched.report.plots import strips_plot
    from prunesched.report.record import Point
    from prunesched.runtime.schedule import BlockCache, Schedule, StepPlan

    steps = (StepPlan("full"), StepPlan(BlockCache(1, 0)), StepPlan(BlockCache(4, 2), 0.5), StepPlan("reuse"), StepPlan(0))
    points = [Point(i, 0, 0.1 * i, 1.0, Schedule(steps=steps[: 3 + i]).to_dict(), {}) for i in range(3)]
    figure = strips_plot(points)
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["full", "F4B2", "branch 0", "F1B0", "reuse"]


def test_schedule_strips_name_forecast_steps_after_their_copies():
    from prunesched.report.plots import strips_plot
    from prunesched.report.record import Point
    from prunesched.runtime.schedule import Schedule, StepPlan

    steps = (StepPlan("full"), StepPlan(0, forecast=2), StepPlan("reuse", forecast=1), StepPlan(0), StepPlan("reuse"))
    figure = strips_plot([Point(0, 0, 0.1, 1.0, Schedule(steps=steps).to_dict(), {})])
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["full", "branch 0", "branch 0 +f2", "reuse", "reuse +f1"]
