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


def test_show_counts_block_cache_steps(tmp_path):
    path = tmp_path / "s.json"
    Schedule(steps=tuple(StepPlan("full" if i % 3 == 0 else BlockCache(8, 0)) for i in range(7))).save(path)
    result = CliRunner().invoke(main, ["schedule", "show", str(path)])
    assert result.exit_code == 0, result.output
    assert "cache: 4 F8B0, 3 full" in result.output
