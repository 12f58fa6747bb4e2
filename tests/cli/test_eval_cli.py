"""``prunesched eval``: a schedule file (or a DaTo table with --dato) in, a printed table and a JSON result out; bad input exits 2."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from prunesched.cli import main
from prunesched.runtime.schedule import Schedule


def run(tmp_path, *args: str):
    return CliRunner().invoke(
        main,
        ["eval", *args, "--model", "tiny-sd", "--images", "2", "--steps", "4", "--repeats", "1", "--cache-dir", str(tmp_path / "cache")],
    )


def test_a_dato_table_is_evaluated_and_the_result_written_as_json(tmp_path, inception_weights):
    table = tmp_path / "table.txt"
    table.write_text("1 0 12 1\n0.5 0.0 0.5 0.5\n")  # DaTo's two rows: cache ids, then prune ratios
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox\na blue whale\n")
    out = tmp_path / "result.json"
    result = run(
        tmp_path,
        str(table),
        "--dato",
        "--prompts",
        str(prompts),
        "--reference",
        "model",
        "--inception-weights",
        inception_weights,
        "--cost",
        "measured",
        "--cost",
        "macs",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "relative_macs" in result.output and f"wrote {out}" in result.output
    data = json.loads(out.read_text())
    assert Schedule.from_dict(data["schedule"]) == Schedule.from_dato([1, 0, 12, 1], [0.5, 0.0, 0.5, 0.5])
    assert {"mse", "ssim", "fid", "kid", "latency_s", "relative_latency", "macs"} <= set(data["metrics"])
    assert data["metrics"]["mse"]["n"] == 2 and data["measured_with"]["batch_size"] == 2  # as run: 2 images
    assert data["measured_with"]["attention"] and data["measured_with"]["latency_scope"] == "loop"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--images", "0"], "images must be an integer from 1 to 100,000, got 0"),
        (["--prompts", "missing.txt"], "cannot read a text file of prompts"),
        (["--reference", "no-such-folder"], "reference folder 'no-such-folder' does not exist"),
        (["--inception-weights", "nope.pth", "--reference", "model"], "weights 'nope.pth' not found"),
        (["--steps", "5"], "schedule has 5 steps but the pipeline's loop has 6"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    Schedule.uniform(5).save(tmp_path / "s.json")
    result = CliRunner().invoke(
        main, ["eval", "s.json", "--model", "tiny-sd", "--images", "2", "--steps", "4", "--cache-dir", "cache", *args]
    )
    assert result.exit_code == 2, result.output
    assert "error: " in result.output and message in result.output
    assert not (tmp_path / "s.eval.json").exists()


def test_an_unreadable_schedule_is_one_line_and_a_dato_table_needs_dato(tmp_path):
    (tmp_path / "s.txt").write_text("not a schedule")
    result = run(tmp_path, str(tmp_path / "s.txt"))
    assert result.exit_code == 2 and "is not JSON" in result.output
    (tmp_path / "table.txt").write_text("1 0 12 1\n0.5 0.0 0.5 0.5\n")
    result = run(tmp_path, str(tmp_path / "table.txt"))
    assert result.exit_code == 2 and "DaTo table" in result.output and "Schedule.load_dato" in result.output


def test_by_default_eval_scores_what_the_embedded_search_scores_with_its_guardrails(tmp_path, monkeypatch):
    from prunesched.cli.evaluate import DEFAULT_IMAGES, DEFAULT_STEPS
    from prunesched.search.config import SearchConfig

    monkeypatch.chdir(tmp_path)  # the result goes next to the command: SCHEDULE's name + .eval.json

    default = SearchConfig.default()
    assert (default.evaluator.num_inference_steps, default.evaluator.images) == (DEFAULT_STEPS, DEFAULT_IMAGES)
    results = {}
    for name, schedule in {"full": Schedule.uniform(11), "reuse": Schedule.uniform(11, "reuse")}.items():
        path = tmp_path / f"{name}.json"
        schedule.save(path)
        args = ["eval", str(path), "--images", "8", "--steps", "10", "--repeats", "1", "--cache-dir", str(tmp_path / "cache")]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert default.objectives[0] in result.output  # the search's quality objective, computed without --reference
        results[name] = (result.output, json.loads((tmp_path / f"{name}.eval.json").read_text()))
    output, data = results["full"]
    assert "guardrails: kept" in output and data["guardrails"]["violation"] == 0
    assert data["guardrails"]["rules"] == [{"metric": "caption_accuracy", "min": "full"}]
    assert data["metrics"]["feature_distance"]["value"] == pytest.approx(0, abs=1e-12)
    assert data["metrics"]["caption_accuracy"] == data["full_model"]["caption_accuracy"]  # the same images
    output, data = results["reuse"]  # every step after the first reuses it
    assert data["metrics"]["feature_distance"]["value"] > 0
    floor = data["full_model"]["caption_accuracy"]["ci"][0]  # the guardrail: not below the full model's lower bound
    accuracy = data["metrics"]["caption_accuracy"]["value"]
    assert data["guardrails"]["violation"] == pytest.approx(max(0.0, floor - accuracy))
    assert ("a search keeps this schedule off its fronts" in output) == (accuracy < floor) == (data["guardrails"]["reason"] is not None)
