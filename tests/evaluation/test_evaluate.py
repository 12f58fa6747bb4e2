"""Evaluation: common random numbers make images reproducible and paired metrics exact; intervals shrink with n; bad input is refused."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics

from prunesched.errors import ConfigError, ScheduleError
from prunesched.evaluation.evaluate import PipelineEvaluator
from prunesched.evaluation.fidelity import fid_resampler
from prunesched.evaluation.generation import ImageGenerator, load_images
from prunesched.evaluation.settings import PipelineSettings
from prunesched.evaluation.stats import DISTANCE_FLOOR, geometric_mean, interval, metric
from prunesched.runtime.schedule import BlockCache, Schedule, StepPlan
from prunesched.search.config import SearchConfig


@pytest.fixture
def settings(tmp_path) -> PipelineSettings:
    return PipelineSettings(model="tiny-sd", images=3, num_inference_steps=4, batch_size=2, repeats=1, cache_dir=str(tmp_path / "cache"))


def test_same_prompts_and_seeds_give_bit_identical_images_and_exact_paired_metrics(settings):
    evaluation = PipelineEvaluator(settings)
    assert evaluation.steps == 5  # PNDM runs one more iteration than inference steps
    full = evaluation.evaluate(Schedule.uniform(5))
    assert full["mse"] == {"value": 0.0, "n": 3, "ci": [0.0, 0.0]} and full["ssim"]["value"] == 1.0
    accelerated = Schedule.from_dato([1, 0, 12, 1], [0.5, 0.0, 0.5, 0.5])
    first = evaluation.evaluate(accelerated)
    kept = load_images(evaluation.folder / accelerated.hash[:16], 3)
    second = evaluation.evaluate(accelerated)
    assert torch.equal(kept, evaluation.generator.images(accelerated))
    assert first["mse"] == second["mse"] and first["mse"]["value"] > 0
    assert first["relative_latency"]["value"] > 0 and first["latency_s"]["n"] == 1


def test_latency_warms_up_only_a_side_that_has_not_run_the_timed_batch_and_timed_false_measures_none(settings, monkeypatch):
    evaluation = PipelineEvaluator(settings)  # the full model's images come from this evaluator's run, not a cache
    runs: list[int] = []
    loop = ImageGenerator._loop
    monkeypatch.setattr(ImageGenerator, "_loop", lambda self, inputs, seeds: runs.append(len(seeds)) or loop(self, inputs, seeds))
    schedule, other = Schedule.deepcache(5, 2), Schedule.deepcache(5, 3)
    accelerated, full = evaluation.generator.latency(schedule, 2)
    assert (len(runs), len(accelerated), len(full)) == (5, 2, 2)  # the full model is warm: one warm-up, then 2 pairs
    runs.clear()
    evaluation.generator.latency(schedule, 2)
    assert len(runs) == 4  # both sides warm
    evaluation.generator.images(other, 1)  # a smaller batch than the timed one warms nothing
    runs.clear()
    evaluation.generator.latency(other, 2)
    assert len(runs) == 5
    runs.clear()
    untimed = evaluation.evaluate(Schedule.deepcache(5, 4), timed=False)
    assert runs == [2, 1] and "relative_latency" not in untimed and untimed["mse"]["n"] == 3  # its images and nothing else


@pytest.mark.parametrize("model", ["tiny-sd3", "tiny-pixart"])
def test_dit_pipelines_are_evaluated_with_cat_schedules_measured_and_counted(model, tmp_path):
    """SD3 (four embeddings, a shifted VAE) and PixArt-Σ (embeddings with masks, the older step callback)."""
    settings = PipelineSettings(
        model=model, images=2, num_inference_steps=4, batch_size=2, repeats=1, cost=("measured", "macs"), cache_dir=str(tmp_path)
    )
    evaluation = PipelineEvaluator(settings)
    full = evaluation.evaluate(Schedule.uniform(evaluation.steps))
    assert full["mse"]["value"] == 0.0 and full["relative_macs"]["value"] == 1.0
    cat = evaluation.evaluate(Schedule.cat(evaluation.steps, t0=2, alpha=0.5))
    assert cat["mse"]["value"] > 0 and 0 < cat["relative_macs"]["value"] < 1 and cat["relative_latency"]["value"] > 0


def test_flux_is_evaluated_with_block_cache_schedules_measured_and_counted(tmp_path):
    """Flux: two embeddings and no negative prompt, packed latents, no sample size in its config."""
    settings = PipelineSettings(
        model="tiny-flux", images=2, num_inference_steps=4, batch_size=2, repeats=1, cost=("measured", "macs"), cache_dir=str(tmp_path)
    )
    evaluation = PipelineEvaluator(settings)
    full = evaluation.evaluate(Schedule.uniform(evaluation.steps))
    assert full["mse"]["value"] == 0.0 and full["relative_macs"]["value"] == 1.0
    cached = evaluation.evaluate(Schedule(steps=(StepPlan("full"), StepPlan(0), StepPlan(BlockCache(1, 0)), StepPlan("full"))))
    assert cached["mse"]["value"] > 0 and 0.5 < cached["relative_macs"]["value"] < 1 and cached["relative_latency"]["value"] > 0


def test_the_unaccelerated_images_are_generated_once_per_machine(settings, monkeypatch):
    PipelineEvaluator(settings)
    calls = []
    monkeypatch.setattr(
        PipelineEvaluator, "_full_images", lambda self, original=PipelineEvaluator._full_images: calls.append(1) or original(self)
    )
    from prunesched.evaluation import generation

    generated = []
    original = generation.ImageGenerator.images
    monkeypatch.setattr(
        generation.ImageGenerator, "images", lambda self, schedule=None: generated.append(schedule) or original(self, schedule)
    )
    PipelineEvaluator(settings)
    assert calls == [1] and generated == []  # read back from disk


def test_bootstrap_intervals_cover_the_value_and_shrink_as_the_image_count_grows():
    rng = np.random.default_rng(0)
    widths = {}
    for n in (16, 256):
        result = metric(rng.normal(3.0, 1.0, size=n))
        low, high = result["ci"]
        assert result["n"] == n and low < result["value"] < high
        widths[n] = high - low
    assert 2.5 < widths[16] / widths[256] < 6.5  # about sqrt(256 / 16) = 4
    assert metric([1.0])["ci"] is None
    reference = torch.from_numpy(rng.normal(0.0, 1.0, (400, 8)))
    fid_widths = []
    for n in (20, 320):
        generated = torch.from_numpy(rng.normal(0.5, 1.0, (n, 8)))
        low, high = interval(fid_resampler(generated, fid_features_to_statistics(reference)), n, resamples=200)
        fid_widths.append(high - low)
    assert fid_widths[1] < fid_widths[0] / 2


def test_the_geometric_mean_weighs_every_image_alike_where_one_outlier_decides_the_mean():
    typical = np.full(15, 0.01)
    assert geometric_mean(typical) == pytest.approx(0.01)
    with_outlier = np.append(typical, 0.5)  # one image whose object changed outright
    assert np.mean(with_outlier) == pytest.approx(0.0406, abs=1e-4)  # 4x the typical image's distance
    assert geometric_mean(with_outlier) == pytest.approx(0.01 * 50 ** (1 / 16))  # 1.28x: still seen, not deciding
    assert geometric_mean(np.array([0.0, 0.0])) == pytest.approx(DISTANCE_FLOOR)  # the full model's own images
    result = metric(with_outlier, center=geometric_mean)
    assert result["value"] == pytest.approx(geometric_mean(with_outlier)) and result["ci"][0] <= result["value"] <= result["ci"][1]


def test_fid_interval_is_centred_on_the_value_although_resampling_biases_fid_upward():
    rng = np.random.default_rng(0)
    reference, generated = torch.from_numpy(rng.normal(0.0, 1.0, (1000, 16))), torch.from_numpy(rng.normal(0.2, 1.0, (64, 16)))
    fid = fid_resampler(generated, fid_features_to_statistics(reference))
    value = fid(np.arange(64))
    low, high = interval(fid, 64, resamples=200)
    assert value < low  # an image drawn twice shrinks the covariance: the plain interval misses the value
    low, high = interval(fid, 64, resamples=200, estimate=value)
    assert low < value < high and high - low == pytest.approx(interval(fid, 64, resamples=200)[1] - interval(fid, 64, resamples=200)[0])


def test_paired_metric_intervals_shrink_with_more_images_of_a_real_pipeline(tmp_path):
    widths = []
    schedule = Schedule.deepcache(5, interval=2, branch=0, prune=0.5)
    for images in (4, 24):
        settings = PipelineSettings(
            model="tiny-sd", images=images, num_inference_steps=4, batch_size=12, repeats=1, cache_dir=str(tmp_path)
        )
        low, high = PipelineEvaluator(settings).evaluate(schedule)["psnr"]["ci"]
        widths.append(high - low)
    assert widths[1] < widths[0]


def test_a_saved_diffusers_folder_is_a_model(tmp_path):
    from prunesched.models.tiny import tiny_sd_pipeline

    tiny_sd_pipeline().save_pretrained(tmp_path / "model")
    settings = PipelineSettings(model=str(tmp_path / "model"), images=2, num_inference_steps=4, repeats=1, cache_dir=str(tmp_path / "c"))
    metrics = PipelineEvaluator(settings).evaluate(Schedule.uniform(5))
    assert metrics["mse"]["value"] == 0.0


def test_the_pipeline_runs_in_the_settings_precision_and_keeps_its_images_apart(settings):
    """``dtype`` places the pipeline (``auto``: fp32 on a CPU, fp16 on a GPU); bf16 stands in for fp16 here, which a
    CPU does not run well. Its images are cached apart from fp32's and still score against its own full model."""
    fp32 = PipelineEvaluator(settings)
    bf16 = PipelineEvaluator(replace(settings, dtype="bfloat16"))
    assert fp32.generator.denoiser.dtype == torch.float32 and bf16.generator.denoiser.dtype == torch.bfloat16
    assert bf16.folder != fp32.folder and bf16.generator.identity["dtype"] == "torch.bfloat16"
    assert not torch.equal(bf16.full_images, fp32.full_images), "each precision has its own unaccelerated images"
    full = bf16.evaluate(Schedule.uniform(5), timed=False)
    assert full["mse"]["value"] == 0.0, "paired with the unaccelerated images of the same precision"
    assert bf16.evaluate(Schedule.from_dato([1, 0, 12, 1], [0.5, 0.0, 0.5, 0.5]), timed=False)["mse"]["value"] > 0


def test_bad_input_is_refused_with_what_would_be_valid(settings, tmp_path):
    with pytest.raises(ConfigError, match="images must be an integer from 1 to 100,000, got 0"):
        replace(settings, images=0)
    with pytest.raises(ConfigError, match=r"cannot read .*nope.txt"):
        replace(settings, prompts={"kind": "text", "path": str(tmp_path / "nope.txt")})
    with pytest.raises(ConfigError, match=r"reference folder .* does not exist"):
        replace(settings, reference=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="cost must list some of measured, predicted, macs"):
        replace(settings, cost=("flops",))
    with pytest.raises(ConfigError, match="dtype must be one of auto, float32, float16, bfloat16, got 'fp8'"):
        replace(settings, dtype="fp8")
    with pytest.raises(ConfigError, match=r"unknown model 'no/such-model'.*local Hugging Face cache"):
        replace(settings, model="no/such-model")
    evaluation = PipelineEvaluator(settings)
    with pytest.raises(ScheduleError, match=r"schedule has 4 steps but the pipeline's loop has 5.*resample"):
        evaluation.evaluate(Schedule.uniform(4))


def test_a_search_may_minimise_any_cost_source_and_fid_when_a_reference_is_set():
    base = {"space": {"kind": "dato", "steps": 5}, "evaluator": {"kind": "pipeline", "num_inference_steps": 4}}
    config = SearchConfig.from_dict({**base, "evaluator": {**base["evaluator"], "cost": ["macs"]}, "objectives": ["mse", "relative_macs"]})
    assert config.objectives == ("mse", "relative_macs")
    with pytest.raises(
        ConfigError,
        match=r"objectives must be two metrics .*feature_distance_gmean, feature_distance, mse, latency_s, relative_latency; got \['fid'",
    ):
        SearchConfig.from_dict({**base, "objectives": ["fid", "relative_latency"]})
    with_fid = {**base["evaluator"], "reference": "model"}
    assert SearchConfig.from_dict({**base, "evaluator": with_fid, "objectives": ["fid", "relative_latency"]}).objectives[0] == "fid"
