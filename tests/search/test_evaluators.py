"""Evaluators: paired metrics that are exactly zero for the unaccelerated schedule, reproducible, with honest intervals."""

from __future__ import annotations

import numpy as np

from prunesched.runtime.schedule import Schedule
from prunesched.search.evaluators import PipelineEvaluator, PipelineSettings, metric


def test_the_pipeline_evaluator_is_exact_for_the_full_schedule_and_reproducible_for_any():
    evaluator = PipelineEvaluator(PipelineSettings(images=2, num_inference_steps=4))
    assert evaluator.steps == 5  # PNDM runs one more iteration than inference steps
    full = evaluator.evaluate(Schedule.uniform(5))
    assert full["mse"]["value"] == 0.0 and full["mse"]["n"] == 2  # bit-identical to the unaccelerated images
    accelerated = Schedule.from_dato([1, 0, 12, 1], [0.5, 0.0, 0.5, 0.5])
    first, second = evaluator.evaluate(accelerated), evaluator.evaluate(accelerated)
    assert first["mse"] == second["mse"] and first["mse"]["value"] > 0  # same prompts and seeds: same images
    assert first["relative_latency"]["value"] > 0


def test_bootstrap_intervals_cover_the_mean_and_shrink_with_more_samples():
    rng = np.random.default_rng(0)
    widths = {}
    for n in (16, 256):
        samples = rng.normal(3.0, 1.0, size=n)
        result = metric(samples)
        low, high = result["ci"]
        assert result["n"] == n and low < result["value"] < high
        widths[n] = high - low
    assert 2.5 < widths[16] / widths[256] < 6.5  # about sqrt(256 / 16) = 4
    assert metric([1.0])["ci"] is None
