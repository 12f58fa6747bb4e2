"""The search config's [evaluator] table becomes typed settings once, at load, and is stored back as the same kind of table."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest

from prunesched.errors import ConfigError
from prunesched.evaluation.settings import PipelineSettings
from prunesched.search.config import SearchConfig
from prunesched.search.evaluators import SyntheticEvaluator, SyntheticSettings, evaluator_factory, evaluator_settings

SPACE = {"kind": "dato", "steps": 5}


def stored(config: SearchConfig) -> SearchConfig:
    """The config as ``search resume ID`` reads it back: through the database's JSON column."""
    return SearchConfig.from_dict(json.loads(json.dumps(config.to_dict())))


def test_a_pipeline_table_is_settings_once_and_round_trips_through_the_stored_json():
    table = {"kind": "pipeline", "model": "tiny-sd", "images": 2, "num_inference_steps": 4, "prompts": ["a", "b"], "cost": "macs"}
    config = SearchConfig.from_dict({"space": SPACE, "evaluator": table, "objectives": ["mse", "relative_macs"]})
    assert isinstance(config.evaluator, PipelineSettings)
    assert config.evaluator == PipelineSettings(model="tiny-sd", images=2, num_inference_steps=4, prompts=["a", "b"], cost=("macs",))
    data = config.to_dict()["evaluator"]
    assert data["kind"] == "pipeline" and {k: data[k] for k in table if k != "cost"} == {k: v for k, v in table.items() if k != "cost"}
    assert stored(config) == config and stored(stored(config)).to_dict() == config.to_dict()


def test_a_table_stored_by_an_earlier_version_loads_as_it_did():
    """Earlier versions stored the [evaluator] table as the user wrote it: some keys, kind optional (pipeline)."""
    config = SearchConfig.from_dict({"space": SPACE, "evaluator": {"model": "tiny-sd", "num_inference_steps": 4}})
    assert config.evaluator == PipelineSettings(model="tiny-sd", num_inference_steps=4)
    assert config.objectives == ("mse", "relative_latency")


def test_synthetic_settings_build_their_evaluator_on_a_worker_from_a_pickled_factory():
    config = SearchConfig.from_dict({"space": SPACE, "evaluator": {"kind": "synthetic", "delay_s": 0.5}})
    assert config.evaluator == SyntheticSettings(0.5) and config.to_dict()["evaluator"] == {"kind": "synthetic", "delay_s": 0.5}
    evaluator = pickle.loads(pickle.dumps(evaluator_factory(config.evaluator)))()
    assert isinstance(evaluator, SyntheticEvaluator) and evaluator.settings == config.evaluator


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"kind": "magic"}, "unknown evaluator kind 'magic'; valid: synthetic, pipeline"),
        ({"kind": "synthetic", "images": 2}, "unknown key 'images' in [evaluator] of kind 'synthetic'"),
        ({"kind": "pipeline", "images": 0}, "images must be an integer >= 1, got 0"),
        ({"kind": "pipeline", "prompts": {"kind": "nope"}}, "prompts kind 'nope' is not known"),
    ],
)
def test_a_bad_table_is_refused_when_the_config_is_loaded(table, message):
    with pytest.raises(ConfigError) as caught:
        evaluator_settings(table)
    assert message in str(caught.value)


def test_loading_a_config_imports_no_torch():
    """The coordinator, the CLI and the report read configs; only a worker that runs a pipeline needs torch."""
    code = "import sys, prunesched.search.config, prunesched.evaluation.settings; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
