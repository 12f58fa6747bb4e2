"""How a schedule is evaluated on a pipeline: the settings, validated without torch.

A search config's ``[evaluator]`` table of kind ``pipeline`` becomes :class:`PipelineSettings` once,
when the config is loaded, so a bad key or a missing prompt file is refused before any worker
starts. This module imports no torch: the search's coordinator, its reports and its CLI build and
read these settings; only :class:`prunesched.evaluation.evaluate.PipelineEvaluator` runs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from prunesched.checks import MAX_SEED, check_number
from prunesched.errors import ConfigError
from prunesched.evaluation.prompts import PromptSpec, prompt_set
from prunesched.models import shapes

if TYPE_CHECKING:
    from prunesched.evaluation.fidelity import FidelitySettings

COSTS = {
    "measured": ("latency_s", "relative_latency"),
    "predicted": ("predicted_latency_s", "predicted_relative_latency"),
    "macs": ("macs", "relative_macs"),
}
"""Cost sources and the metrics each gives: timed runs, the per-step cost model, analytic MACs."""

MAX_IMAGES = 100_000
"""Images per evaluation at most: FID is conventionally measured on 50,000."""
MAX_INFERENCE_STEPS = 1_000
"""Denoising steps at most: DDPM's 1,000, the longest loop in use."""
MAX_BATCH_SIZE = 1_024
"""Images per pipeline call at most."""
MAX_REPEATS = 100
"""Timed runs per latency at most."""
MAX_GUIDANCE_SCALE = 100.0
"""Largest classifier-free guidance scale (those in use are 1 to 20)."""

LATENCY_SCOPES = ("loop", "pipeline")
"""``loop``: the pipeline call with precomputed text embeddings up to the latents (the denoising loop and its
few set-up lines); ``pipeline``: the whole call from prompts to decoded images."""


@dataclass(frozen=True)
class GenerationSpec:
    """What determines the images: the model, each image's prompt and seed, the loop settings and the batching."""

    model: str
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    num_inference_steps: int = 10
    guidance_scale: float = 7.5
    batch_size: int = 8

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ConfigError("no images to generate: give at least one image (images >= 1)")
        if len(self.prompts) != len(self.seeds):
            raise ConfigError(f"{len(self.prompts)} prompts but {len(self.seeds)} seeds; give one seed per image")
        if self.batch_size < 1 or self.num_inference_steps < 1:
            raise ConfigError(f"batch_size and num_inference_steps must be >= 1, got {self.batch_size} and {self.num_inference_steps}")


@dataclass(frozen=True)
class PipelineSettings:
    """How a schedule is evaluated; the ``[evaluator]`` table of kind ``pipeline`` holds these keys.

    The defaults evaluate on the embedded shapes model with its held-out captions.
    ``prompts`` is a list of prompts or a prompt-set table (:func:`prunesched.evaluation.prompts.prompt_set`,
    e.g. ``{kind = "imagenet"}``); image i uses seed ``seed + i``; a larger set is subsampled with
    ``seed``, a smaller one cycled through. ``feature_extractor`` (default: the judge for the shapes
    model, Inception otherwise; ``inception_weights`` is a local weight file) gives the paired
    feature distance to the unaccelerated images wherever it can load without a download
    (:meth:`has_features`): its geometric mean over images, ``feature_distance_gmean``, is the
    default quality objective; ``feature_distance`` is its arithmetic mean. ``reference`` turns on
    FID and KID in the same space: ``"model"`` (the unaccelerated model's images of the same prompts and seeds) or a
    folder of real images.
    ``cost`` lists the cost sources to compute (:data:`COSTS`). ``repeats`` timed runs (after a
    warm-up) give every latency; ``latency_scope`` is ``loop`` (text encoding and VAE decode
    excluded) or ``pipeline``. ``dtype`` is the pipeline's precision: ``auto`` (fp16 on a GPU, fp32
    on a CPU), ``float32``, ``float16`` or ``bfloat16``; images, caches and cost tables are kept apart by it.

    Every number is bounded (the ``MAX_`` constants of this module). Building the settings checks them all;
    a model name is checked against the built-in pipelines and a reference's feature extractor against
    torch-fidelity's registry, both of which import torch.
    """

    kind: ClassVar[str] = "pipeline"

    model: str = "shapes"
    prompts: PromptSpec = field(default_factory=lambda: {"kind": "shapes"})
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
    dtype: str = "auto"

    def __post_init__(self) -> None:
        from prunesched.models.loading import check_model
        from prunesched.timing import DTYPES

        check_model(self.model)
        sizes = {"images": MAX_IMAGES, "num_inference_steps": MAX_INFERENCE_STEPS, "repeats": MAX_REPEATS, "batch_size": MAX_BATCH_SIZE}
        for name, high in sizes.items():
            check_number(getattr(self, name), name, "[evaluator]", integer=True, low=1, high=high)
        check_number(self.seed, "seed", "[evaluator]", integer=True, high=MAX_SEED)
        check_number(self.guidance_scale, "guidance_scale", "[evaluator]", high=MAX_GUIDANCE_SCALE)
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise ConfigError(f"[evaluator] dtype must be one of auto, {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.latency_scope not in LATENCY_SCOPES:
            raise ConfigError(f"[evaluator] latency_scope must be one of {', '.join(LATENCY_SCOPES)}, got {self.latency_scope!r}")
        costs = [self.cost] if isinstance(self.cost, str) else list(self.cost)
        if not costs or not set(costs) <= set(COSTS):
            raise ConfigError(f"[evaluator] cost must list some of {', '.join(COSTS)}, got {self.cost!r}")
        object.__setattr__(self, "cost", tuple(costs))
        if self.reference not in (None, "model") and not Path(self.reference).is_dir():
            raise ConfigError(f"reference folder {self.reference!r} does not exist; give a folder of real images or 'model'")
        if self.reference is not None and self.images < 2:
            raise ConfigError(f"FID and KID need at least 2 images, got images = {self.images}")
        if self.has_features():
            self.fidelity()  # an unknown extractor or a missing weight file is refused here, not on a worker
        self.prompt_list()  # so is a missing or malformed prompt file

    def prompt_list(self) -> list[str]:
        """The prompt of every image, in order."""
        prompts = prompt_set(self.prompts)
        if self.images <= len(prompts.prompts):
            return list(prompts.subsample(self.images, self.seed).prompts)
        return [prompts.prompts[i % len(prompts.prompts)] for i in range(self.images)]

    def pipeline(self) -> Any:
        """The model's pipeline where these settings evaluate: on :func:`~prunesched.timing.pick_device`'s device, in ``dtype``."""
        from prunesched.models.loading import load_pipeline
        from prunesched.timing import pick_device, pick_dtype

        device = pick_device()
        return load_pipeline(self.model).to(device, pick_dtype(self.dtype, device))

    def spec(self) -> GenerationSpec:
        """The images these settings generate: one prompt and one seed per image."""
        seeds = tuple(self.seed + i for i in range(self.images))
        return GenerationSpec(self.model, tuple(self.prompt_list()), seeds, self.num_inference_steps, self.guidance_scale, self.batch_size)

    def fidelity(self) -> FidelitySettings:
        """FID/KID features: the extractor named, else the judge for the shapes models and Inception for any other."""
        from prunesched.evaluation.fidelity import FidelitySettings
        from prunesched.models.shapes.judge import EXTRACTOR

        natural = EXTRACTOR if self.model in shapes.MODELS else "inception-v3-compat"
        return FidelitySettings(self.feature_extractor or natural, self.inception_weights)

    def has_features(self) -> bool:
        """Whether a feature extractor is at hand without a download: the shipped judge for the shapes models, or an
        extractor or weight file named, or a reference (FID needs one; Inception then loads from torch-fidelity's cache)."""
        named = self.feature_extractor is not None or self.inception_weights is not None
        return self.model in shapes.MODELS or named or self.reference is not None

    def default_guardrails(self) -> list[dict[str, object]]:
        """A search's ``guardrails`` when its config names none: on a shapes model with its own captions, the judge's
        caption accuracy must not fall below the full model's (:mod:`prunesched.search.guardrails`); none otherwise."""
        captions = isinstance(self.prompts, Mapping) and self.prompts.get("kind") == "shapes"
        return [{"metric": "caption_accuracy", "min": "full"}] if self.model in shapes.MODELS and captions else []

    def objective_metrics(self) -> tuple[str, ...]:
        """The metrics this evaluation gives that a search can minimise: quality first (the paired feature distance's
        geometric mean over images where there are features), cost last."""
        features = ("feature_distance_gmean", "feature_distance") if self.has_features() else ()
        quality = features + ("mse",) + (("fid", "kid") if self.reference else ())
        return quality + tuple(name for source in self.cost for name in COSTS[source])
