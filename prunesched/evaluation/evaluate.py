"""Evaluating a schedule: its images, their quality against the unaccelerated model and a reference, and its cost.

:class:`PipelineEvaluator` is built once per worker (it loads the pipeline, the unaccelerated images,
the feature extractor and the reference features) and then scores many schedules; the search's
``pipeline`` evaluator and ``prunesched eval`` are both this class; its settings are
:class:`prunesched.evaluation.settings.PipelineSettings`.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunesched.errors import ConfigError, ScheduleError
from prunesched.evaluation import paired
from prunesched.evaluation.cost import CostModel
from prunesched.evaluation.fidelity import IMAGE_SUFFIXES, FidelityScorer
from prunesched.evaluation.generation import ImageGenerator, key_hash, load_images, save_images
from prunesched.evaluation.settings import PipelineSettings
from prunesched.evaluation.stats import Metrics, geometric_mean, metric
from prunesched.models import shapes
from prunesched.models.loading import folder_fingerprint
from prunesched.models.shapes.judge import caption_matches, load_judge
from prunesched.runtime.schedule import Schedule


def default_cache_dir() -> Path:
    """Where a worker keeps images, reference features and cost tables: ``$PRUNESCHED_CACHE`` or ``~/.cache/prunesched``."""
    return Path(os.environ.get("PRUNESCHED_CACHE") or Path.home() / ".cache" / "prunesched")


class PipelineEvaluator:
    """Scores schedules on one pipeline with fixed prompts and seeds; see :class:`PipelineSettings`.

    Every metric is returned as ``{"value", "n", "ci"}``: paired metrics bootstrap over images,
    FID/KID bootstrap over the candidate's images, a measured latency bootstraps over timed runs.
    """

    def __init__(self, settings: PipelineSettings) -> None:
        self.settings = settings
        self.generator = ImageGenerator(settings.pipeline(), settings.spec())
        device = self.generator.device
        self.steps = self.generator.loop_length
        self.metrics = settings.objective_metrics()
        self.cache = Path(settings.cache_dir) if settings.cache_dir else default_cache_dir()
        self.folder = self.cache / "images" / key_hash(self.generator.identity)
        self.full_images = self._full_images()
        self.lpips = paired.lpips_scorer(device)
        self.judge = load_judge().to(device) if settings.model in shapes.MODELS else None
        self.fidelity = FidelityScorer(settings.fidelity(), device, self.cache) if settings.has_features() else None
        self.full_features = None if self.fidelity is None else self.fidelity.pair_features(self.fidelity.features(self.full_images))
        self.reference = None
        if self.fidelity is not None and settings.reference is not None:
            source = self.full_images if settings.reference == "model" else Path(settings.reference)
            key = (
                {"reference": "model", **self.generator.identity}
                if settings.reference == "model"
                else _folder_key(Path(settings.reference))
            )
            self.reference = self.fidelity.reference(source, key, self.generator.size)
        self._full_metrics: dict[int, Metrics] = {}
        self.costs = CostModel(self.generator, self.cache, settings.repeats) if {"predicted", "macs"} & set(settings.cost) else None
        self.device = f"{device}, batch {self.generator.batch_size}, {self.generator.attention}, latency: {settings.latency_scope}"

    def full_metrics(self, images: int | None = None) -> Metrics:
        """The unaccelerated model's quality metrics on the first ``images`` prompts and seeds (None: all of them)."""
        n = len(self.full_images) if images is None else images
        if n not in self._full_metrics:
            self._full_metrics[n] = self.quality(self.full_images[:n])
        return self._full_metrics[n]

    def evaluate(self, schedule: Schedule, images: int | None = None, timed: bool = True) -> Metrics:
        """The schedule's metrics on the first ``images`` prompts and seeds (None: all of them); ``timed`` False
        leaves out the measured latency (the cost model's, which needs no runs, stays)."""
        if len(schedule) != self.steps:
            raise ScheduleError(
                f"schedule has {len(schedule)} steps but the pipeline's loop has {self.steps} at num_inference_steps="
                f"{self.settings.num_inference_steps}; use schedule.resample({self.steps})"
            )
        start = time.perf_counter()
        generated_images = self.generator.images(schedule, images)
        if self.settings.keep_images and images is None:
            save_images(generated_images, self.folder / schedule.hash[:16])
        generated = time.perf_counter()
        out = self.quality(generated_images)
        scored = time.perf_counter()
        out.update(self.cost(schedule, timed))
        out["generation_s"] = metric([generated - start])
        out["metrics_s"] = metric([scored - generated])
        out["cost_s"] = metric([time.perf_counter() - scored])
        return out

    def quality(self, images: torch.Tensor) -> Metrics:
        """Paired fidelity to the unaccelerated images (in pixels, and in features where there is an extractor),
        FID/KID when a reference is set, and on the shapes model with its captions, the share of images whose main
        object the judge recognises. ``images`` are the first N of the settings' prompts and seeds."""
        n = len(images)
        full = self.full_images[:n]
        out = {name: metric(fn(images, full)) for name, fn in (("mse", paired.mse), ("psnr", paired.psnr), ("ssim", paired.ssim))}
        if self.lpips is not None:
            out["lpips"] = metric(self.lpips(images, full))
        matches = None if self.judge is None else caption_matches(self.judge, images, list(self.generator.spec.prompts[:n]))
        if matches is not None:
            out["caption_accuracy"] = metric([float(m) for m in matches])
        if self.fidelity is not None and self.full_features is not None:
            generated = self.fidelity.features(images)  # once, for the feature distance and FID/KID
            distances = self.fidelity.feature_distance(generated, self.full_features[:n])
            out["feature_distance_gmean"] = metric(distances, center=geometric_mean)
            out["feature_distance"] = metric(distances)
            if self.reference is not None:
                out.update(self.fidelity.score(generated, self.reference, self.settings.seed))
        return out

    def cost(self, schedule: Schedule, timed: bool = True) -> Metrics:
        """The cost sources the settings ask for; the measured latency only where ``timed``."""
        out: Metrics = {}
        if "measured" in self.settings.cost and timed:
            accelerated, full = self.generator.latency(schedule, self.settings.repeats, self.settings.latency_scope)
            out["latency_s"] = metric([s.wall for s in accelerated], center=np.median)
            out["relative_latency"] = metric([a.wall / f.wall for a, f in zip(accelerated, full)], center=np.median)
        if self.costs is not None:
            table = self.costs.table(schedule)
            if "predicted" in self.settings.cost:
                out["predicted_latency_s"] = metric([table.latency_s(schedule)])
                out["predicted_relative_latency"] = metric([table.relative_latency(schedule)])
            if "macs" in self.settings.cost:
                out["macs"] = metric([table.schedule_macs(schedule)])
                out["relative_macs"] = metric([table.relative_macs(schedule)])
        return out

    def describe(self) -> dict[str, Any]:
        """What every number of this evaluation was measured with."""
        return {
            "settings": asdict(self.settings),
            "device": self.device,
            "loop_length": self.steps,
            "image_size": self.generator.size,
            "batch_size": self.generator.batch_size,
            "attention": self.generator.attention,
            "latency_scope": self.settings.latency_scope,
            "repeats": self.settings.repeats,
            "lpips": paired.lpips_unavailable_reason() or "computed",
            "images_folder": str(self.folder),
        }

    def _full_images(self) -> torch.Tensor:
        """The unaccelerated images, generated once per machine and read back from disk after."""
        folder = self.folder / "full"
        images = load_images(folder, self.settings.images)
        if images is None:
            images = self.generator.images(None)
            save_images(images, folder)
        return images


def _folder_key(folder: Path) -> dict[str, Any]:
    """A real-image folder's identity: its path and its files (names, sizes, modification times)."""
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.rglob("*")):
        raise ConfigError(f"reference folder {str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)}, subfolders included)")
    return {"reference": folder_fingerprint(folder)}
