from click.testing import CliRunner

from prunesched import BlockCache, Schedule, StepPlan
from prunesched.cli import main
from prunesched.runtime.paper_tables import dato_ours_b1


def test_show_prints_a_valid_schedule(tmp_path):
    path = tmp_path / "s.json"
    dato_ours_b1().save(path)
    result = CliRunner().invoke(main, ["schedule", "show", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("51 steps, method dato")
    assert "cache: 38 branch 0, 6 full, 7 reuse" in result.output


def test_bad_files_exit_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "prunesched.schedule", "version": 1, "steps": [{"prune": 0.9}]}')
    for path, message in ((bad, "accepts 0 to 0.75"), (tmp_path / "missing.json", "cannot read schedule file")):
        result = CliRunner().invoke(main, ["schedule", "show", str(path)])
        assert result.exit_code == 2
        assert result.output.count("\n") == 1 and message in result.output and result.output.startswith("error: ")


def test_show_names_block_caches_as_cache_dit_does(tmp_path):
    path = tmp_path / "blocks.json"
    Schedule.deepcache(6, 3, BlockCache(8, 0)).save(path)
    result = CliRunner().invoke(main, ["schedule", "show", str(path)])
    assert result.exit_code == 0, result.output
    assert "cache: 4 F8B0, 2 full" in result.output and "   1    F8B0  0.00" in result.output


def test_show_names_forecast_steps_by_their_order(tmp_path):
    path = tmp_path / "forecast.json"
    Schedule(steps=(StepPlan("full"), StepPlan(0, forecast=1), StepPlan("reuse", forecast=2), StepPlan(0))).save(path)
    result = CliRunner().invoke(main, ["schedule", "show", str(path)])
    assert result.exit_code == 0, result.output
    assert "cache: 1 branch 0, 1 branch 0 +f1, 1 full, 1 reuse +f2" in result.output
    assert "   1       0  0.00  +f1" in result.output and "   3       0  0.00\n" in result.output
