"""Evaluating a schedule: its images, their quality against the unaccelerated model and a reference, and its cost.

:class:`Evaluation` is built once per worker (it loads the pipeline, the unaccelerated images,
the feature extractor and the reference features) and then scores many schedules; the search's
``pipeline`` evaluator and ``prunesched eval`` are both this class.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunesched.checks import check_number
from prunesched.errors import ConfigError, ScheduleError
from prunesched.evaluation import paired
from prunesched.evaluation.cost import CostModel
from prunesched.evaluation.fidelity import IMAGE_SUFFIXES, FidelityScorer, FidelitySettings
from prunesched.evaluation.generation import (
    LATENCY_SCOPES,
    GenerationSpec,
    ImageGenerator,
    key_hash,
    load_images,
    save_images,
)
from prunesched.evaluation.prompts import prompt_set
from prunesched.evaluation.stats import Metrics, metric
from prunesched.models import shapes
from prunesched.models.loading import check_model, folder_fingerprint, load_pipeline
from prunesched.models.shapes.judge import EXTRACTOR, caption_matches, load_judge
from prunesched.runtime.schedule import Schedule

COSTS = {
    "measured": ("latency_s", "relative_latency"),
    "predicted": ("predicted_latency_s", "predicted_relative_latency"),
    "macs": ("macs", "relative_macs"),
}
"""Cost sources and the metrics each gives: timed runs, the per-step cost model, analytic MACs."""


def default_cache_dir() -> Path:
    """Where a worker keeps images, reference features and cost tables: ``$PRUNESCHED_CACHE`` or ``~/.cache/prunesched``."""
    return Path(os.environ.get("PRUNESCHED_CACHE") or Path.home() / ".cache" / "prunesched")


@dataclass(frozen=True)
class EvalSettings:
    """How a schedule is evaluated; the ``[evaluator]`` table of kind ``pipeline`` holds these keys.

    The defaults evaluate on the embedded shapes model with its held-out captions.
    ``prompts`` is a list of prompts or a prompt-set table (:func:`prunesched.evaluation.prompts.prompt_set`,
    e.g. ``{kind = "imagenet"}``); image i uses seed ``seed + i``; a larger set is subsampled with
    ``seed``, a smaller one cycled through. ``reference`` turns on FID and KID: ``"model"`` (the
    unaccelerated model's images of the same prompts and seeds) or a folder of real images, in the
    space of ``feature_extractor`` (default: the judge for the shapes model, Inception otherwise).
    ``cost`` lists the cost sources to compute (:data:`COSTS`). ``repeats`` timed runs (after a
    warm-up) give every latency; ``latency_scope`` is ``loop`` (text encoding and VAE decode
    excluded) or ``pipeline``.
    """

    model: str = "shapes"
    prompts: Any = field(default_factory=lambda: {"kind": "shapes"})
    images: int = 4
    seed: int = 0
    num_inference_steps: int = 10
    guidance_scale: float = 7.5
    batch_size: int = 8
    repeats: int = 3
    latency_scope: str = "loop"
    cost: tuple[str, ...] = ("measured",)
    reference: str | None = None
    feature_extractor: str | None = None
    inception_weights: str | None = None
    cache_dir: str | None = None
    keep_images: bool = True

    def __post_init__(self) -> None:
        check_model(self.model)
        for name in ("images", "num_inference_steps", "repeats", "batch_size"):
            check_number(getattr(self, name), name, "[evaluator]", integer=True, low=1)
        check_number(self.seed, "seed", "[evaluator]", integer=True)
        check_number(self.guidance_scale, "guidance_scale", "[evaluator]")
        if self.latency_scope not in LATENCY_SCOPES:
            raise ConfigError(f"[evaluator] latency_scope must be one of {', '.join(LATENCY_SCOPES)}, got {self.latency_scope!r}")
        costs = [self.cost] if isinstance(self.cost, str) else list(self.cost)
        if not costs or not set(costs) <= set(COSTS):
            raise ConfigError(f"[evaluator] cost must list some of {', '.join(COSTS)}, got {self.cost!r}")
        object.__setattr__(self, "cost", tuple(costs))
        if self.reference not in (None, "model") and not Path(self.reference).is_dir():
            raise ConfigError(f"reference folder {self.reference!r} does not exist; give a folder of real images or 'model'")
        if self.reference is not None:
            if self.images < 2:
                raise ConfigError(f"FID and KID need at least 2 images, got images = {self.images}")
            self.fidelity()  # an unknown extractor or a missing weight file is refused here, not on a worker
        self.prompt_list()  # so is a missing or malformed prompt file

    def prompt_list(self) -> list[str]:
        """The prompt of every image, in order."""
        prompts = prompt_set(self.prompts)
        if self.images <= len(prompts.prompts):
            return list(prompts.subsample(self.images, self.seed).prompts)
        return [prompts.prompts[i % len(prompts.prompts)] for i in range(self.images)]

    def spec(self) -> GenerationSpec:
        seeds = tuple(self.seed + i for i in range(self.images))
        return GenerationSpec(self.model, tuple(self.prompt_list()), seeds, self.num_inference_steps, self.guidance_scale, self.batch_size)

    def fidelity(self) -> FidelitySettings:
        """FID/KID features: the extractor named, else the judge for the shapes model and Inception for any other."""
        natural = EXTRACTOR if self.model == shapes.NAME else "inception-v3-compat"
        return FidelitySettings(self.feature_extractor or natural, self.inception_weights)

    def objective_metrics(self) -> tuple[str, ...]:
        """The metrics this evaluation gives that a search can minimise: quality first, cost last."""
        quality = ("mse",) + (("fid", "kid") if self.reference else ())
        return quality + tuple(name for source in self.cost for name in COSTS[source])


class Evaluation:
    """Scores schedules on one pipeline with fixed prompts and seeds; see :class:`EvalSettings`.

    Every metric is returned as ``{"value", "n", "ci"}``: paired metrics bootstrap over images,
    FID/KID bootstrap over the candidate's images, a measured latency bootstraps over timed runs.
    """

    def __init__(self, settings: EvalSettings = EvalSettings()) -> None:
        self.settings = settings
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.generator = ImageGenerator(load_pipeline(settings.model).to(device), settings.spec())
        self.steps = self.generator.loop_length
        self.metrics = settings.objective_metrics()
        self.cache = Path(settings.cache_dir) if settings.cache_dir else default_cache_dir()
        self.folder = self.cache / "images" / key_hash(self.generator.identity)
        self.full_images = self._full_images()
        self.lpips = paired.lpips_scorer(device)
        self.judge = load_judge().to(device) if settings.model == shapes.NAME else None
        self.fidelity = self.reference = None
        if settings.reference is not None:
            self.fidelity = FidelityScorer(settings.fidelity(), device, self.cache)
            source = self.full_images if settings.reference == "model" else Path(settings.reference)
            key = (
                {"reference": "model", **self.generator.identity}
                if settings.reference == "model"
                else _folder_key(Path(settings.reference))
            )
            self.reference = self.fidelity.reference(source, key, self.generator.size)
        self.costs = CostModel(self.generator, self.cache, settings.repeats) if {"predicted", "macs"} & set(settings.cost) else None
        self.device = f"{device}, batch {self.generator.batch_size}, {self.generator.attention}, latency: {settings.latency_scope}"

    def evaluate(self, schedule: Schedule) -> Metrics:
        if len(schedule) != self.steps:
            raise ScheduleError(
                f"schedule has {len(schedule)} steps but the pipeline's loop has {self.steps} at num_inference_steps="
                f"{self.settings.num_inference_steps}; use schedule.resample({self.steps})"
            )
        start = time.perf_counter()
        images = self.generator.images(schedule)
        if self.settings.keep_images:
            save_images(images, self.folder / schedule.hash[:16])
        generated = time.perf_counter()
        out = self.quality(images)
        scored = time.perf_counter()
        out.update(self.cost(schedule))
        out["generation_s"] = metric([generated - start])
        out["metrics_s"] = metric([scored - generated])
        out["cost_s"] = metric([time.perf_counter() - scored])
        return out

    def quality(self, images: torch.Tensor) -> Metrics:
        """Paired fidelity to the unaccelerated images, FID/KID when a reference is set, and on the
        shapes model with its captions, the share of images whose main object the judge recognises."""
        out = {
            name: metric(fn(images, self.full_images)) for name, fn in (("mse", paired.mse), ("psnr", paired.psnr), ("ssim", paired.ssim))
        }
        if self.lpips is not None:
            out["lpips"] = metric(self.lpips(images, self.full_images))
        matches = None if self.judge is None else caption_matches(self.judge, images, self.generator.spec.prompts)
        if matches is not None:
            out["caption_accuracy"] = metric([float(m) for m in matches])
        if self.fidelity is not None and self.reference is not None:
            out.update(self.fidelity.score(images, self.reference, self.settings.seed))
        return out

    def cost(self, schedule: Schedule) -> Metrics:
        out: Metrics = {}
        if "measured" in self.settings.cost:
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
