"""``experiments/run.py``: every shipped config is well formed, a table and a search really run, missing inputs are refused."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from prunesched.errors import ConfigError
from prunesched.evaluation.settings import PipelineSettings
from prunesched.storage import Store

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "run.py"
CONFIGS = sorted((ROOT / "experiments" / "configs").glob("*.toml"))

spec = importlib.util.spec_from_file_location("experiments_run", SCRIPT)
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)


def stand_ins(config: Path, tmp_path: Path) -> dict[str, str]:
    """A path override for every [paths] entry, so the config loads here: a file where it names a file
    (weights, annotations), else a folder that passes for a diffusers model (the real inputs cannot be downloaded)."""
    import tomllib

    overrides = {}
    for name, entry in tomllib.loads(config.read_text()).get("paths", {}).items():
        target = tmp_path / name
        if Path(entry["path"]).suffix:
            target.write_text("{}")
        else:
            target.mkdir()
            (target / "model_index.json").write_text("{}")
        overrides[name] = str(target)
    return overrides


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_loads_and_names_valid_settings_and_schedules(config, tmp_path):
    loaded = run.load(config, stand_ins(config, tmp_path))
    assert loaded["title"] and loaded["paper"]
    if loaded["kind"] == "search":
        from prunesched.search.config import SearchConfig

        SearchConfig.from_dict(loaded["search"])
        return
    assert set(loaded["evaluator"]) <= set(PipelineSettings.__dataclass_fields__)
    steps = loaded["evaluator"]["num_inference_steps"]
    for row in loaded["rows"]:
        if "schedule" in row:  # one iteration per step (Euler, SDXL's default) or one more (PNDM, SD 1.5's)
            assert len(run.row_schedule(row["schedule"], steps + 1)) in (steps, steps + 1), row["label"]
        else:
            assert row["paper"] and row["note"], f"{row['label']}: a paper-only row needs the paper's numbers and a note saying why"


def test_a_table_runs_every_row_and_writes_json_markdown_and_a_plot(tmp_path):
    prompts = tmp_path / "captions.txt"
    prompts.write_text("a large red circle on a striped blue background\na small green square on a dotted white background\n")
    config = tmp_path / "table.toml"
    config.write_text(f"""
kind = "table"
title = "toy"
paper = "none"
plot = true
[paths]
captions = {{ path = "{prompts}", what = "a prompt file" }}
[evaluator]
model = "shapes"
prompts = {{ kind = "text", path = "{{captions}}" }}
images = 2
num_inference_steps = 3
repeats = 1
reference = "model"
cost = ["measured", "macs"]
cache_dir = "{tmp_path / "cache"}"
[[rows]]
label = "SiTo 0.5"
family = "SiTo"
schedule = {{ kind = "uniform", prune = 0.5, method = "sito" }}
paper = {{ fid = 1.5 }}
[[rows]]
label = "DeepCache N=2"
schedule = {{ kind = "deepcache", interval = 2 }}
[[rows]]
label = "ToMeSD 0.5"
paper = {{ fid = 2.5 }}
note = "paper only"
""")
    out, png = tmp_path / "out.json", tmp_path / "plot.png"
    assert run.main([str(config), "--out", str(out), "--plot", str(png)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["label"] for r in rows] == ["SiTo 0.5", "DeepCache N=2", "ToMeSD 0.5"]
    sito, deepcache, paper_only = rows
    assert sito["paper"] == {"fid": 1.5} and "metrics" not in paper_only
    for row in (sito, deepcache):
        metrics = row["metrics"]
        assert {"fid", "caption_accuracy", "relative_macs", "relative_latency"} <= set(metrics)
        assert metrics["speedup"]["value"] == pytest.approx(1 / metrics["relative_latency"]["value"])
    assert deepcache["metrics"]["relative_macs"]["value"] < 1.0  # cache steps skip most of the UNet
    table = out.with_suffix(".md").read_text()
    assert "| SiTo 0.5 |" in table and "paper: fid" in table and "| ToMeSD 0.5 |" in table
    assert png.stat().st_size > 10_000


def test_a_search_config_runs_as_search_launch_would_and_is_stored(tmp_path, ray_local):
    config = tmp_path / "search.toml"
    config.write_text(f"""
kind = "search"
title = "toy"
paper = "none"
[paths]
notes = {{ path = "{tmp_path}", what = "a folder" }}
[search]
name = "toy search in {{notes}}"
[search.space]
kind = "dato"
steps = 6
[search.evaluator]
kind = "synthetic"
[search.proposer]
population = 4
generations = 2
[search.dispatch]
workers = 1
""")
    db = tmp_path / "toy.db"
    assert run.main([str(config), "--db", str(db)]) == 0
    (search,) = Store(str(db)).searches()
    assert search.name == f"toy search in {tmp_path}" and search.status == "finished"


def test_a_missing_input_is_refused_in_one_line_naming_it_and_how_to_set_it(tmp_path):
    config = next(c for c in CONFIGS if "[paths]" in c.read_text())
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(config), "--out", str(tmp_path / "x.json")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert ": not found: " in line and "--path " in line
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ('kind = "plot"', {}, "kind must be one of table, search"),
        ('kind = "table"\n[paths]\nx = "a"', {}, "[paths] entries must look like"),
        ('kind = "table"\nmodel = "{nowhere}"', {}, "{nowhere} in '{nowhere}' is not one of the config's [paths]"),
        ('kind = "table"', {"sd15": "/x"}, "--path sd15: "),
    ],
)
def test_malformed_configs_are_refused_with_what_would_be_valid(tmp_path, text, overrides, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        run.load(config, overrides)
    assert message in str(caught.value)


def test_a_row_schedule_of_an_unknown_kind_names_the_valid_ones():
    with pytest.raises(ConfigError, match="kind one of uniform, deepcache, cat, dato-ours-b1, threshold, file"):
        run.row_schedule({"kind": "tomesd", "ratio": 0.5}, 11)


def test_a_threshold_row_is_the_calibrations_schedule_and_refuses_another_model_or_rule():
    from prunesched.calibration.document import Calibration
    from prunesched.calibration.thresholds import threshold_schedule

    path = "experiments/configs/shapes_dit.calibration.json"  # the DiT table's: 28 Euler steps of shapes-dit
    row = {"kind": "threshold", "calibration": str(ROOT / path), "rule": "teacache", "threshold": 0.2}
    assert run.row_schedule(row, 28, "shapes-dit") == threshold_schedule(Calibration.load(ROOT / path), "teacache", 0.2)
    with pytest.raises(ConfigError, match="recorded on 'shapes-dit'"):
        run.row_schedule(row, 28, "shapes")
    with pytest.raises(ConfigError, match="covers 28 loop iterations"):
        run.row_schedule(row, 21, "shapes-dit")
    with pytest.raises(ConfigError, match="unknown threshold method 'fbcache'; valid: first_block, teacache, magcache"):
        run.row_schedule(row | {"rule": "fbcache"}, 28)
    with pytest.raises(ConfigError, match="threshold"):
        run.row_schedule(row | {"threshold": -1}, 28)


def documented_runs() -> list[tuple[str, list[str]]]:
    """(where, argv after run.py) of every ``python experiments/run.py`` line in the docs and the configs' own headers."""
    import re
    import shlex

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *CONFIGS]
    found = []
    for page in pages:
        text = re.sub(r"\\\n#?", " ", page.read_text())  # continued lines, in Markdown and in TOML comments
        for line in re.findall(r"python experiments/run\.py [^\n`]*", text):
            found.append((f"{page.name}: {line.strip()}", shlex.split(line, comments=True)[2:]))
    return found


@pytest.mark.parametrize(("where", "argv"), documented_runs(), ids=[w for w, _ in documented_runs()])
def test_every_documented_experiment_command_names_a_config_and_its_paths(where, argv):
    config = ROOT / argv[0]
    assert config in CONFIGS, where
    import tomllib

    names = set(tomllib.loads(config.read_text()).get("paths", {}))
    given = {argv[i + 1].split("=", 1)[0] for i, word in enumerate(argv) if word == "--path"}
    assert given == names, f"{where}: --path for {sorted(given)}, but the config's [paths] are {sorted(names)}"


def test_a_row_schedule_takes_dsap_prune_less_steps():
    schedule = run.row_schedule({"kind": "uniform", "prune": 0.6, "method": "atedm", "prune_less": 3}, 11)
    assert schedule.prune_less is not None and schedule.prune_less.steps == 3 and schedule.method.name == "atedm"


def test_evaluator_overrides_are_toml_values_for_tables_only(capsys):
    assert run.evaluator_setting("seed=1000") == ("seed", 1000)
    assert run.evaluator_setting('cost=["macs"]') == ("cost", ["macs"])
    with pytest.raises(ConfigError, match="--evaluator takes KEY=VALUE with a TOML value"):
        run.evaluator_setting("seed=")
    table = str(ROOT / "experiments" / "configs" / "shapes_dit_methods.toml")
    assert run.main([table, "--evaluator", "colour=1"]) == 2  # refused before any image is made
    assert "unexpected keyword argument 'colour'" in capsys.readouterr().err
    search = str(ROOT / "experiments" / "configs" / "shapes_search_vs_baselines.toml")
    assert run.main([search, "--evaluator", "seed=1"]) == 2
    assert "--evaluator changes a table's [evaluator]" in capsys.readouterr().err
