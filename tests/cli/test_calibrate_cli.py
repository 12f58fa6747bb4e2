"""``prunesched calibrate``: a tiny pipeline's calibration written as a file, its signals and threshold schedules
printed with their cost, a heat map drawn; bad input is one line and exit code 2."""

from __future__ import annotations

from click.testing import CliRunner

from prunesched.calibration.document import Calibration
from prunesched.cli import main


def test_calibrate_writes_the_file_prints_the_signals_and_schedules_and_draws_the_heat_map(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNESCHED_CACHE", str(tmp_path / "cache"))  # the cost table
    out, plot = tmp_path / "tiny.json", tmp_path / "heat.png"
    args = ["calibrate", "tiny-sd", "--prompts", "2", "--steps", "2", "-o", str(out), "--plot", str(plot)]
    result = CliRunner().invoke(main, [*args, "--thresholds", "teacache=0,9", "--thresholds", "first_block=9"])
    assert result.exit_code == 0, result.output
    calibration = Calibration.load(out)
    assert calibration.model == "tiny-sd" and calibration.loop_length == 3 and len(calibration.prompts) == 2  # PNDM: 2 steps, 3 iterations
    assert plot.read_bytes().startswith(b"\x89PNG")
    lines = result.output.splitlines()
    assert any(line.split()[:2] == ["2", f"{calibration.timesteps[2]:g}"] for line in lines)  # a row per loop iteration
    rows = {tuple(line.split()[:2]): line.split() for line in lines if line.split()[:1] in (["TeaCache"], ["FBCache"])}
    assert rows[("TeaCache", "0")][2:4] == ["3/3", "FFF"] and rows[("TeaCache", "0")][5] == "1"  # the full model's MACs
    assert rows[("TeaCache", "9")][2:4] == ["2/3", "FrF"]  # TeaCache computes the first and the last step
    assert rows[("FBCache", "9")][2:4] == ["1/3", "Fcc"] and float(rows[("FBCache", "9")][5]) < 1  # branch 0: fewer MACs
    assert f"wrote {out}" in result.output


def test_bad_input_is_one_line_and_exit_code_2(tmp_path):
    for args, message in [
        (["tiny-sd", "--thresholds", "fbc=0.1"], "'fbc=0.1' names no method; valid: first_block, teacache, magcache"),
        (["tiny-sd", "--thresholds", "teacache=a"], "expected METHOD=comma-separated numbers"),
        (["tiny-sd", "--prompts", "0"], "--prompts"),
        (["no-such-model", "-o", str(tmp_path / "x.json")], "unknown model 'no-such-model'"),
        (["tiny-sd", "-o", str(tmp_path)], "is a directory"),
    ]:
        result = CliRunner().invoke(main, ["calibrate", *args])
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1
