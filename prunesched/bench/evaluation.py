"""The evaluation benchmark: what one candidate's evaluation costs, and how well the cost model predicts.

- **Evaluation time** (:func:`measure_evaluation`): one DeepCache schedule evaluated on n images
  of the tiny SD pipeline with FID/KID against the unaccelerated images, split into generation,
  metric computation (paired metrics, Inception features, FID, KID and their bootstrap
  intervals) and latency measurement. The reference (unaccelerated images and their features)
  is built before timing starts, as a search builds it once per worker.
- **Cost model** (:func:`measure_cost_model`): random schedules of the DaTo space on a 51-step
  loop, and all-full, DeepCache every 3rd step and DaTo Table 6 "Ours-b1"; for each, the
  prediction is compared with (a) the schedule's end-to-end call time in full steps of the same
  call (drift-proof) and (b) its measured latency relative to the unaccelerated pipeline, paired
  runs (what the search's ``relative_latency`` is). How close these come is this benchmark's to
  report: the tests check the composition, not a machine's speed.
"""

from __future__ import annotations

import datetime
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

from prunesched.evaluation.cost import CostModel
from prunesched.evaluation.evaluate import PipelineEvaluator
from prunesched.evaluation.generation import ImageGenerator, median_ratio
from prunesched.evaluation.settings import GenerationSpec, PipelineSettings
from prunesched.models.loading import load_pipeline
from prunesched.runtime.paper_tables import dato_ours_b1
from prunesched.runtime.schedule import Schedule
from prunesched.search.spaces import space_from_config
from prunesched.timing import device_name, pick_device


@dataclass(frozen=True)
class EvalBenchConfig:
    """What the benchmark measures; ``inception_weights`` None writes a random-init stand-in of the same architecture."""

    image_counts: tuple[int, ...] = (32, 128, 500)
    num_inference_steps: int = 10
    batch_size: int = 16
    cost_schedules: int = 20
    cost_steps: int = 50
    repeats: int = 3
    seed: int = 0
    inception_weights: str | None = None


def write_standin_inception(path: Path) -> None:
    """torch-fidelity's Inception-v3 with random He-initialised weights, saved where a weight file is expected.

    For machines that cannot download the real file: the compute (and so every timing) is the real
    network's; the feature values, and so the FIDs, are not comparable to published ones.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    torch.manual_seed(0)
    with (
        mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None),
        mock.patch("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", lambda *a, **k: None),
    ):
        model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):  # the default init shrinks activations to constants over 90 layers
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    torch.save(model.state_dict(), path)


def measure_evaluation(config: EvalBenchConfig, weights: str, cache: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Seconds of generation, metrics and latency measurement for one candidate at each image count."""
    schedule = Schedule.deepcache(config.num_inference_steps + 1, interval=3, branch=0)
    out = {}
    for n in config.image_counts:
        settings = PipelineSettings(
            model="tiny-sd",
            prompts={"kind": "imagenet"},
            images=n,
            num_inference_steps=config.num_inference_steps,
            batch_size=config.batch_size,
            repeats=config.repeats,
            reference="model",
            inception_weights=weights,
            cache_dir=str(cache),
            keep_images=True,
        )
        evaluation = PipelineEvaluator(settings)
        metrics = evaluation.evaluate(schedule)
        generation, scoring = metrics["generation_s"]["value"], metrics["metrics_s"]["value"]
        out[str(n)] = {
            "generation_s": generation,
            "metrics_s": scoring,
            "metric_share": scoring / (generation + scoring),
            "latency_measurement_s": metrics["cost_s"]["value"],
            "fid": metrics["fid"],
            "mse": metrics["mse"],
        }
        log(f"{n} images: generation {generation:.1f} s, metrics {scoring:.1f} s ({out[str(n)]['metric_share']:.0%} of both)")
    return out


def measure_cost_model(config: EvalBenchConfig, cache: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Prediction errors of the cost model over random schedules of the DaTo space, and on three named schedules:
    all full steps, DeepCache every 3rd step and DaTo Table 6 "Ours-b1" (resampled when the loop is not 51 long)."""
    loop = config.cost_steps + 1
    space = space_from_config({"kind": "dato", "steps": loop, "caches": ["reuse", 0, "full"], "ratios": [0.3, 0.5, 0.7]})
    generator = ImageGenerator(
        load_pipeline("tiny-sd").to(pick_device()), GenerationSpec("tiny-sd", ("a photo of a cat",), (0,), config.cost_steps, 7.5, 1)
    )
    model = CostModel(generator, cache, config.repeats)
    rng = np.random.default_rng(config.seed)
    rows = []
    for i in range(config.cost_schedules):
        rows.append(_prediction(model, space.decode(space.random(rng, 1)[0]), config.repeats))
        log(f"schedule {i}: " + _summary(rows[-1]))
    b1 = dato_ours_b1()
    b1 = b1 if len(b1) == loop else b1.resample(loop)
    named = {
        "all-full": Schedule.uniform(loop, method=b1.method),
        "deepcache-3": Schedule(steps=Schedule.deepcache(loop, interval=3, branch=0).steps, method=b1.method),
        "dato-ours-b1": b1,
    }
    results = {}
    for name, schedule in named.items():
        results[name] = _prediction(model, schedule, config.repeats)
        log(f"{name}: " + _summary(results[name]))
    return {
        "schedules": rows,
        "median_abs_error_full_steps": statistics.median(abs(r["error_full_steps"]) for r in rows),
        "median_abs_error_relative_latency": statistics.median(abs(r["error_relative_latency"]) for r in rows),
        "named_schedules": results,
    }


def _prediction(model: CostModel, schedule: Schedule, repeats: int) -> dict[str, float]:
    """One schedule's predicted cost next to (a) its end-to-end call measured in full steps of the same call and
    (b) its latency relative to the unaccelerated pipeline, measured in ``repeats`` paired runs."""
    table = model.table(schedule)
    predicted_steps, predicted_relative = table.steps(schedule), table.relative_latency(schedule)
    measured_steps = statistics.median(model.measure(schedule) for _ in range(repeats))
    accelerated, unaccelerated = model.generator.latency(schedule, repeats)
    measured_relative = median_ratio(accelerated, unaccelerated)
    return {
        "predicted_full_steps": predicted_steps,
        "measured_full_steps": measured_steps,
        "error_full_steps": predicted_steps / measured_steps - 1,
        "predicted_relative_latency": predicted_relative,
        "measured_relative_latency": measured_relative,
        "error_relative_latency": predicted_relative / measured_relative - 1,
    }


def _summary(row: dict[str, float]) -> str:
    return (
        f"full steps {row['predicted_full_steps']:.2f} predicted / {row['measured_full_steps']:.2f} measured; "
        f"relative latency {row['predicted_relative_latency']:.3f} / {row['measured_relative_latency']:.3f}"
    )


def run_eval_bench(config: EvalBenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run both parts and return the JSON-ready result, goals included."""
    with tempfile.TemporaryDirectory() as folder:
        cache = Path(folder)
        weights = config.inception_weights
        if weights is None:
            weights = str(cache / "inception-standin.pth")
            write_standin_inception(Path(weights))
        result: dict[str, Any] = {"benchmark": "evaluation", "meta": _meta(config)}
        result["evaluation"] = measure_evaluation(config, weights, cache, log)
        result["cost_model"] = measure_cost_model(config, cache, log)
    largest = result["evaluation"][str(max(config.image_counts))]["metric_share"]
    error = result["cost_model"]["median_abs_error_relative_latency"]
    result["goals"] = {
        "metric_share_at_largest_count": {"value": largest, "goal": "<= 0.10 (on a GPU)", "met": largest <= 0.10},
        "cost_model_median_error": {"value": error, "goal": "<= 0.05", "met": error <= 0.05},
    }
    return result


def _meta(config: EvalBenchConfig) -> dict[str, Any]:
    return {
        "config": asdict(config),
        "device": device_name(pick_device()),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        **{name: version(name) for name in ("prunesched", "torch", "diffusers", "torch-fidelity")},
        "model": "tiny SD pipeline built from a config (random weights), 32x32 images",
        "inception_weights": config.inception_weights
        or "random-init stand-in of torch-fidelity's Inception-v3 (same compute; the real file cannot be downloaded here)",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
