"""The search config's [evaluator] table becomes typed settings once, at load, and is stored back as the same kind of table."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from dataclasses import replace

import pytest

from prunesched.errors import ConfigError
from prunesched.evaluation.settings import PipelineSettings
from prunesched.search.config import MAX_WORKERS, DispatchConfig, SearchConfig
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
        ({"kind": "pipeline", "images": 0}, "images must be an integer from 1 to 100,000, got 0"),
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


BOUNDS = [
    ({"proposer": {"population": 1_000_000_000}}, "[proposer] population must be an integer from 2 to 10,000, got 1000000000"),
    ({"proposer": {"generations": 10_001}}, "[proposer] generations must be an integer from 1 to 10,000, got 10001"),
    ({"proposer": {"crossover_eta": 1e4}}, "[proposer] crossover_eta must be a number from 0 to 1,000, got 10000.0"),
    ({"proposer": {"mutation_eta": float("inf")}}, "[proposer] mutation_eta must be a number from 0 to 1,000, got inf"),
    ({"proposer": {"mutation_prob": 1.5}}, "[proposer] mutation_prob must be a number from 0 to 1, got 1.5"),
    ({"proposer": {"mutation": "gaussian"}}, "[proposer] mutation 'gaussian' is not valid; valid: choice, polynomial"),
    ({"dispatch": {"workers": 1025, "address": "auto"}}, "[dispatch] workers must be an integer from 1 to 1,024, got 1025"),
    ({"dispatch": {"retries": 101}}, "[dispatch] retries must be an integer from 0 to 100, got 101"),
    ({"dispatch": {"timeout_s": 0}}, "[dispatch] timeout_s must be a number above 0 and at most 604,800, got 0"),
    ({"dispatch": {"timeout_s": 604_801}}, "[dispatch] timeout_s must be a number above 0 and at most 604,800, got 604801"),
    ({"dispatch": {"gpus_per_worker": 65}}, "[dispatch] gpus_per_worker must be a number from 0 to 64, got 65"),
    ({"dispatch": {"cpus_per_worker": 1025}}, "[dispatch] cpus_per_worker must be a number from 0 to 1,024, got 1025"),
    ({"space": {"steps": 1001}}, "[space] steps must be an integer from 2 to 1,000, got 1001"),
    ({"space": {"steps": 5, "ratios": [0.5] * 101}}, "[space] ratios must list at most 100 values, got 101"),
    ({"space": {"kind": "dsap", "steps": 5, "taus": [1001]}}, "[space] taus must be an integer from 0 to 1,000, got 1001"),
    ({"space": {"kind": "dsap", "steps": 5, "intervals": [1001]}}, "[space] intervals must be an integer from 1 to 1,000, got 1001"),
    (
        {"space": {"kind": "dsap", "steps": 5, "taus": list(range(100)), "intervals": list(range(1, 101))}},
        "[space] of kind 'dsap' holds 100,000 schedules, more than 10,000; shorten its value lists",
    ),
    ({"evaluator": {"kind": "synthetic", "delay_s": 3601}}, "[evaluator] delay_s must be a number from 0 to 3,600, got 3601"),
    ({"evaluator": {"images": 100_001}}, "[evaluator] images must be an integer from 1 to 100,000, got 100001"),
    ({"evaluator": {"num_inference_steps": 1001}}, "[evaluator] num_inference_steps must be an integer from 1 to 1,000, got 1001"),
    ({"evaluator": {"batch_size": 1025}}, "[evaluator] batch_size must be an integer from 1 to 1,024, got 1025"),
    ({"evaluator": {"repeats": 101}}, "[evaluator] repeats must be an integer from 1 to 100, got 101"),
    ({"evaluator": {"seed": 2**32}}, "[evaluator] seed must be an integer from 0 to 4,294,967,295, got 4294967296"),
    ({"evaluator": {"guidance_scale": 101}}, "[evaluator] guidance_scale must be a number from 0 to 100, got 101"),
    ({"seed": 2**32}, "the search config's seed must be an integer from 0 to 4,294,967,295, got 4294967296"),
]


@pytest.mark.parametrize(("tables", "message"), BOUNDS, ids=[message.split(" must")[0] for _, message in BOUNDS])
def test_every_size_of_a_config_is_bounded_and_refused_in_one_line_when_it_is_loaded(tables, message):
    """Checked by ``SearchConfig.from_dict``, which ``search launch`` and ``search resume`` call before Ray starts."""
    with pytest.raises(ConfigError) as caught:
        SearchConfig.from_dict({"space": SPACE, "evaluator": {"kind": "synthetic"}, **tables})
    assert str(caught.value) == message


def test_a_local_search_runs_at_most_one_worker_per_cpu_and_a_cluster_search_up_to_the_bound():
    cpus = os.cpu_count() or 1
    with pytest.raises(ConfigError, match=rf"^\[dispatch\] workers = {cpus + 1} but a local Ray instance .* has {cpus} CPUs"):
        DispatchConfig(workers=cpus + 1).check_local_room()
    with pytest.raises(ConfigError, match="a local Ray instance"):
        DispatchConfig(workers=cpus + 1, address="local").check_local_room()
    DispatchConfig(workers=cpus).check_local_room()
    DispatchConfig(workers=MAX_WORKERS, address="auto").check_local_room()


def test_a_config_for_a_cluster_loads_without_an_address_so_that_address_can_name_the_cluster_later():
    cpus = os.cpu_count() or 1
    config = SearchConfig.from_dict({"space": SPACE, "evaluator": {"kind": "synthetic"}, "dispatch": {"workers": cpus + 1}})
    replace(config.dispatch, address="auto").check_local_room()


def test_the_largest_values_of_every_bound_load():
    config = SearchConfig.from_dict(
        {
            "seed": 2**32 - 1,
            "space": {"kind": "dato", "steps": 1000, "ratios": [0.5] * 100},
            "evaluator": {"kind": "synthetic", "delay_s": 3600},
            "proposer": {"population": 10_000, "generations": 10_000, "crossover_eta": 1000, "mutation_eta": 1000},
            "dispatch": {
                "workers": 1024,
                "address": "auto",
                "retries": 100,
                "timeout_s": 604_800,
                "gpus_per_worker": 64,
                "cpus_per_worker": 1024,
            },
        }
    )
    assert config.proposer.population == 10_000 and config.dispatch.workers == 1024 and config.space.steps == 1000
