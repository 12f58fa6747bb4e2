"""FID/KID: torch-fidelity's own numbers, reference features cached under every key that matters, honest intervals."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch_fidelity
import torch_fidelity.utils
from PIL import Image
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.metric_kid import kernel_mmd

from prunesched.errors import ConfigError
from prunesched.evaluation.evaluate import PipelineEvaluator
from prunesched.evaluation.fidelity import cosine_distance, fid_resampler, kid_resampler
from prunesched.evaluation.generation import save_images
from prunesched.evaluation.settings import PipelineSettings
from prunesched.evaluation.stats import DISTANCE_FLOOR
from prunesched.runtime.schedule import Schedule

DEEPCACHE = Schedule.deepcache(5, interval=2, branch=0)


@pytest.fixture
def settings(tmp_path, inception_weights) -> PipelineSettings:
    return PipelineSettings(
        model="tiny-sd",
        images=6,
        num_inference_steps=4,
        batch_size=3,
        reference="model",
        inception_weights=inception_weights,
        cache_dir=str(tmp_path / "cache"),
        repeats=1,
    )


@pytest.fixture
def reference_extractions(monkeypatch) -> list[int]:
    """The input slot of every torch-fidelity feature extraction: 2 the reference (its cache saves it on a hit), 1 generated images."""
    calls: list[int] = []
    original = torch_fidelity.utils.extract_featuresdict_from_input_id

    def counting(input_id, *args, **kwargs):
        calls.append(input_id)
        return original(input_id, *args, **kwargs)

    monkeypatch.setattr(torch_fidelity.utils, "extract_featuresdict_from_input_id", counting)
    return calls


def test_fid_and_kid_equal_torch_fidelitys_own_result_on_the_same_images(settings, inception_weights, tmp_path):
    evaluation = PipelineEvaluator(settings)
    metrics = evaluation.evaluate(DEEPCACHE)
    generated = evaluation.folder / DEEPCACHE.hash[:16]
    theirs = torch_fidelity.calculate_metrics(
        input1=str(generated),
        input2=str(evaluation.folder / "full"),
        fid=True,
        kid=True,
        cuda=False,
        cache=False,
        feature_extractor_weights_path=inception_weights,
        kid_subset_size=6,
        verbose=False,
        save_cpu_ram=True,
    )
    assert metrics["fid"]["value"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-6)
    assert metrics["kid"]["value"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-6, abs=1e-12)
    assert metrics["fid"]["value"] > 0 and metrics["fid"]["n"] == 6
    low, high = metrics["fid"]["ci"]
    assert low < high


def test_reference_features_are_cached_and_read_back_on_the_second_run(settings, reference_extractions):
    PipelineEvaluator(settings)
    assert reference_extractions.count(2) == 1
    second = PipelineEvaluator(settings)
    assert reference_extractions.count(2) == 1  # a hit: nothing extracted again
    before = reference_extractions.count(1)
    second.evaluate(DEEPCACHE)
    assert reference_extractions.count(2) == 1
    assert reference_extractions.count(1) == before + 1  # the candidate's images are new: extracted once, for all three metrics


@pytest.mark.parametrize(
    "change",
    [
        {"prompts": ["a violet cube", "a grey cone"]},
        {"seed": 1},
        {"num_inference_steps": 3},
        {"guidance_scale": 3.0},
        {"images": 5},
        {"model": "tiny-sdxl"},
        {"batch_size": 2},
    ],
    ids=lambda change: next(iter(change)),
)
def test_any_change_of_a_key_invalidates_the_reference(settings, reference_extractions, change):
    PipelineEvaluator(settings)
    PipelineEvaluator(replace(settings, **change))
    assert reference_extractions.count(2) == 2
    files = sorted((Path(settings.cache_dir) / "fidelity").glob("*.json"))
    assert len(files) == 2


def test_other_extractor_weights_invalidate_the_reference_even_under_the_same_name_and_time(settings, reference_extractions, tmp_path):
    weights = tmp_path / "weights.pth"
    shutil.copy2(settings.inception_weights, weights)
    PipelineEvaluator(replace(settings, inception_weights=str(weights)))
    before = weights.stat()
    state = torch.load(weights)
    state["fc.bias"] += 1
    torch.save(state, weights)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `cp -p` or `rsync -t` would leave it
    PipelineEvaluator(replace(settings, inception_weights=str(weights)))
    assert reference_extractions.count(2) == 2


def test_settings_outside_the_key_still_hit_the_cache(settings, reference_extractions):
    PipelineEvaluator(settings)
    PipelineEvaluator(replace(settings, repeats=2, cost=("macs",), latency_scope="pipeline", keep_images=False))
    assert reference_extractions.count(2) == 1


def test_a_folder_of_real_images_is_resized_and_matches_torch_fidelity(settings, inception_weights, tmp_path):
    rng = np.random.default_rng(0)
    real = tmp_path / "real"
    real.mkdir()
    for i, size in enumerate([(48, 40), (40, 64), (33, 33), (50, 50), (64, 40), (40, 48), (36, 40)]):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(real / f"{i}.png")
    evaluation = PipelineEvaluator(replace(settings, reference=str(real)))
    metrics = evaluation.evaluate(DEEPCACHE)
    theirs = torch_fidelity.calculate_metrics(
        input1=str(evaluation.folder / DEEPCACHE.hash[:16]),
        input2=str(real),
        fid=True,
        kid=True,
        cuda=False,
        cache=False,
        samples_resize_and_crop=32,
        feature_extractor_weights_path=inception_weights,
        kid_subset_size=6,
        verbose=False,
        save_cpu_ram=True,
    )
    assert metrics["fid"]["value"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-6)


class ChannelStats(FeatureExtractorBase):
    """A user's own feature extractor: per-channel means and standard deviations of the pixels."""

    def __init__(self, name, features_list, **kwargs):  # torch-fidelity passes its options to every extractor
        super().__init__(name, features_list)

    def forward(self, x):
        x = x.float() / 255
        return (torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1),)

    @staticmethod
    def get_provided_features_list():
        return ("stats",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "stats"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)


def test_a_registered_custom_feature_extractor_is_used(settings):
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if "channel-stats" not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor("channel-stats", ChannelStats)
    evaluation = PipelineEvaluator(replace(settings, feature_extractor="channel-stats", inception_weights=None))
    metrics = evaluation.evaluate(DEEPCACHE)
    theirs = torch_fidelity.calculate_metrics(
        input1=str(evaluation.folder / DEEPCACHE.hash[:16]),
        input2=str(evaluation.folder / "full"),
        fid=True,
        cuda=False,
        cache=False,
        feature_extractor="channel-stats",
        verbose=False,
        save_cpu_ram=True,
    )
    assert metrics["fid"]["value"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-6)
    with pytest.raises(ConfigError, match=r"unknown feature extractor 'no-such'.*inception-v3-compat"):
        replace(settings, feature_extractor="no-such")


def test_the_bootstrap_statistics_equal_fid_and_unbiased_kid_on_the_full_sample():
    rng = np.random.default_rng(0)
    generated = torch.from_numpy(rng.normal(0.3, 1.0, (40, 16)))
    reference = torch.from_numpy(rng.normal(0.0, 1.2, (40, 16)))
    everyone = np.arange(40)
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    statistics = fid_features_to_statistics(reference)
    fid = fid_statistics_to_metric(fid_features_to_statistics(generated), statistics, False)
    assert fid_resampler(generated, statistics)(everyone) == pytest.approx(fid["frechet_inception_distance"], rel=1e-6)
    mmd = kernel_mmd(generated.numpy(), reference.numpy(), kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_coef0=1)
    assert kid_resampler(generated, reference)(everyone) == pytest.approx(mmd, rel=1e-9)


def test_missing_or_empty_reference_folders_and_weight_files_are_refused(settings, tmp_path):
    with pytest.raises(ConfigError, match=r"reference folder .*missing.* does not exist"):
        replace(settings, reference=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no images"):
        PipelineEvaluator(replace(settings, reference=str(tmp_path / "empty")))
    with pytest.raises(ConfigError, match=r"weights .*nope.pth.* not found"):
        replace(settings, inception_weights=str(tmp_path / "nope.pth"))


def test_saved_images_read_back_bit_exactly(tmp_path):
    images = torch.randint(0, 256, (3, 3, 12, 10), dtype=torch.uint8)
    save_images(images, tmp_path / "x")
    from prunesched.evaluation.generation import load_images

    assert torch.equal(load_images(tmp_path / "x", 3), images)
    assert load_images(tmp_path / "x", 4) is None


def test_the_feature_distance_is_the_angle_between_paired_features_whatever_their_scale():
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    reference = torch.tensor([[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0], [3.0, 4.0]])
    assert cosine_distance(features, reference) == pytest.approx([0.0, 1.0, 2.0, 0.0])
    with pytest.raises(ConfigError, match="must match"):
        cosine_distance(features, reference[:2])


def test_the_paired_feature_distance_is_zero_for_the_full_model_and_grows_as_a_schedule_skips_more(tmp_path):
    settings = PipelineSettings(
        model="tiny-sd", images=4, num_inference_steps=8, feature_extractor="shapes-judge", cache_dir=str(tmp_path / "c"), repeats=1
    )
    # the default quality objective wherever there are features: the distance's geometric mean over images
    assert settings.objective_metrics()[:2] == ("feature_distance_gmean", "feature_distance")
    evaluation = PipelineEvaluator(settings)
    assert evaluation.full_metrics()["feature_distance"]["value"] == pytest.approx(0, abs=1e-12)
    assert evaluation.full_metrics()["feature_distance_gmean"]["value"] == pytest.approx(DISTANCE_FLOOR)
    metrics = [evaluation.quality(evaluation.generator.images(Schedule.deepcache(9, n))) for n in (2, 8)]
    for name in ("feature_distance", "feature_distance_gmean"):
        distances = [m[name] for m in metrics]
        assert all(d["n"] == 4 and d["ci"][0] <= d["value"] <= d["ci"][1] for d in distances)
        assert 0 < distances[0]["value"] < distances[1]["value"]
    assert all(m["feature_distance_gmean"]["value"] <= m["feature_distance"]["value"] for m in metrics)  # AM-GM
    assert "feature_distance" not in PipelineSettings(model="tiny-sd").objective_metrics()  # no extractor without a download
