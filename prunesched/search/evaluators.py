"""Evaluators: what a worker does with one candidate schedule, returning metrics only.

An evaluator is built once per worker (it may load a pipeline) and then called for many
schedules. Every metric is a :data:`Metric`: a value with the number of samples it came from
and a 95 % bootstrap interval when there are several, so a user can see when two points of a
front are not really different. The ``[evaluator]`` table of a search config names a kind of
:data:`EVALUATORS` and its keyword arguments; configs never name code to import.
"""

from __future__ import annotations

import functools
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np

from prunesched.errors import ConfigError
from prunesched.runtime.schedule import Schedule, StepPlan
from prunesched.search.prompts import prompt_set
from prunesched.search.tables import check_keys, check_number

Metric = dict[str, Any]
"""``{"value": float, "n": int, "ci": [low, high] or None}``."""

Metrics = dict[str, Metric]


class Evaluator(Protocol):
    """Scores one schedule.

    ``metrics`` names the metrics that can be objectives (lower is better for each); ``steps`` is
    the loop length the evaluator's pipeline runs (None: any); ``device`` names where it runs.
    """

    steps: int | None
    device: str
    metrics: tuple[str, ...]

    def evaluate(self, schedule: Schedule) -> Metrics: ...


def metric(samples: Sequence[float], seed: int = 0, resamples: int = 1000) -> Metric:
    """The mean of per-sample values with its 95 % percentile-bootstrap interval (None for one sample)."""
    values = np.asarray(samples, dtype=float)
    ci = None
    if len(values) > 1:
        rng = np.random.default_rng(seed)
        means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
        ci = [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]
    return {"value": float(values.mean()), "n": int(len(values)), "ci": ci}


def worker_name() -> str:
    return f"{platform.node()}:{os.getpid()}"


@dataclass(frozen=True)
class SyntheticSettings:
    """``[evaluator]`` of kind ``synthetic``: ``delay_s`` makes each evaluation take that long."""

    delay_s: float = 0.0

    def __post_init__(self) -> None:
        check_number(self.delay_s, "delay_s", "[evaluator]")


class SyntheticEvaluator:
    """A deterministic two-objective schedule problem with a known Pareto front, for tests and benchmarks.

    Each step adds a cost (full 1, branch b 0.3 (b + 1) capped at 0.9, reuse 0.02; pruning
    a fraction p scales a computed step's cost by 1 - 0.6 p) and an error weighted by how early
    the step is (early steps shape the image; DaTo §3.2): 1 for reuse, 0.3 / (b + 1) for a
    branch, plus 0.8 p² for pruning. Both objectives are sums over steps, so the exact front is
    computable (:func:`synthetic_front`).
    """

    metrics = ("error", "cost")
    steps: int | None = None
    device = "cpu (synthetic)"

    def __init__(self, settings: SyntheticSettings = SyntheticSettings()) -> None:
        self.settings = settings

    def evaluate(self, schedule: Schedule) -> Metrics:
        if self.settings.delay_s:
            time.sleep(self.settings.delay_s)
        n = len(schedule)
        error = sum(step_error(step, i, n) for i, step in enumerate(schedule.steps))
        cost = sum(step_cost(step) for step in schedule.steps)
        return {"error": metric([error]), "cost": metric([cost])}


def step_cost(step: StepPlan) -> float:
    if step.cache == "reuse":
        return 0.02
    base = 1.0 if step.cache == "full" else min(0.9, 0.3 * (int(step.cache) + 1))
    return base * (1.0 - 0.6 * step.prune)


def step_error(step: StepPlan, index: int, steps: int) -> float:
    weight = 1.0 + 2.0 * (1.0 - index / steps)
    if step.cache == "reuse":
        return weight
    cache = 0.0 if step.cache == "full" else 0.3 / (int(step.cache) + 1)
    return weight * (cache + 0.8 * step.prune**2)


def synthetic_front(options: Sequence[Sequence[StepPlan]]) -> np.ndarray:
    """The exact (error, cost) front of :class:`SyntheticEvaluator` when step i may take any plan of ``options[i]``."""
    from prunesched.search.pareto import front_indices

    front = np.zeros((1, 2))
    n = len(options)
    for i, plans in enumerate(options):
        step = np.array([[step_error(p, i, n), step_cost(p)] for p in plans])
        sums = (front[:, None, :] + step[None, :, :]).reshape(-1, 2)
        front = sums[front_indices(sums)]
    return front


@dataclass(frozen=True)
class PipelineSettings:
    """``[evaluator]`` of kind ``pipeline``: which pipeline, which prompts and seeds, how many images and repeats.

    ``prompts`` is a list of prompts or a prompt-set table (:func:`prunesched.search.prompts.prompt_set`,
    e.g. ``{kind = "imagenet"}``). ``images`` images are generated, image i with seed
    ``seed + i``: a set with more prompts than that is subsampled with ``seed``, a smaller one is
    cycled through.
    """

    model: str = "tiny-sd"
    prompts: Any = ("a red circle", "a blue square", "a green triangle", "a yellow star")
    images: int = 4
    seed: int = 0
    num_inference_steps: int = 10
    guidance_scale: float = 7.5
    repeats: int = 1

    def __post_init__(self) -> None:
        from prunesched.models.tiny import PIPELINES

        if self.model not in PIPELINES:
            raise ConfigError(f"[evaluator] unknown model {self.model!r}; valid: {', '.join(PIPELINES)}")
        for name in ("images", "num_inference_steps", "repeats"):
            check_number(getattr(self, name), name, "[evaluator]", integer=True, low=1)
        check_number(self.seed, "seed", "[evaluator]", integer=True)
        check_number(self.guidance_scale, "guidance_scale", "[evaluator]")
        self.prompt_list()  # a missing or malformed prompt file is refused here, not on a worker

    def prompt_list(self) -> list[str]:
        """The prompt of every image, in order."""
        prompts = prompt_set(self.prompts)
        if self.images <= len(prompts.prompts):
            return list(prompts.subsample(self.images, self.seed).prompts)
        return [prompts.prompts[i % len(prompts.prompts)] for i in range(self.images)]


class PipelineEvaluator:
    """Generates images with a schedule applied and scores them against the same pipeline's unaccelerated images.

    Common random numbers: every candidate gets the same prompts and per-image seeds. Quality is
    paired fidelity to the full model's images of the same seeds: ``mse`` with its bootstrap
    interval over images (``psnr`` is reported too, for reading, but is not an objective: higher
    is better). Cost is the time of the pipeline call up to the latents (text encoding and the
    denoising loop; VAE decode excluded), median of ``repeats`` after a warm-up, and
    ``relative_latency``, the same time divided by this worker's own unaccelerated time, so
    heterogeneous workers compare. FID and KID arrive with the evaluation module.
    """

    metrics = ("mse", "latency_s", "relative_latency")

    def __init__(self, settings: PipelineSettings = PipelineSettings()) -> None:
        import torch

        from prunesched.bench.timing import Stopwatch
        from prunesched.models.tiny import PIPELINES

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.pipe = PIPELINES[settings.model]().to(self.device)
        self.prompts = settings.prompt_list()
        self.seeds = [settings.seed + i for i in range(settings.images)]
        self.call = {"num_inference_steps": settings.num_inference_steps, "guidance_scale": settings.guidance_scale}
        self.repeats = settings.repeats
        self.stopwatch = Stopwatch(torch.device(self.device))
        self.pipe.scheduler.set_timesteps(settings.num_inference_steps)
        self.steps = len(self.pipe.scheduler.timesteps)
        self.reference, self.full_latency = self._generate()

    def evaluate(self, schedule: Schedule) -> Metrics:
        import prunesched

        with prunesched.apply(self.pipe, schedule):
            images, latency = self._generate()
        errors = ((images - self.reference) ** 2).mean(dim=(1, 2, 3)).double().numpy()
        psnr = 10 * np.log10(1.0 / np.maximum(errors, 1e-12))
        return {
            "mse": metric(errors),
            "psnr": metric(psnr),
            "latency_s": metric([latency]),
            "relative_latency": metric([latency / self.full_latency]),
        }

    def _generate(self) -> tuple[Any, float]:
        import torch

        times: list[Any] = []
        for repeat in range(self.repeats + 1):
            generators = [torch.Generator(self.device).manual_seed(s) for s in self.seeds]
            with torch.no_grad(), self.stopwatch.region(times):
                latents = self.pipe(self.prompts, generator=generators, output_type="latent", **self.call).images
            if repeat == 0:
                times.clear()  # warm-up
        with torch.no_grad():
            vae = self.pipe.vae
            images = vae.decode(latents / vae.config.scaling_factor).sample
        return ((images.float().cpu().clamp(-1, 1) + 1) / 2), statistics.median(t.wall for t in times)


EVALUATORS: dict[str, tuple[type, type]] = {
    "synthetic": (SyntheticEvaluator, SyntheticSettings),
    "pipeline": (PipelineEvaluator, PipelineSettings),
}
"""Evaluator kinds a config can name: the evaluator and the settings its ``[evaluator]`` table holds."""


def evaluator_factory(table: Mapping[str, Any]) -> Callable[[], Evaluator]:
    """A picklable zero-argument factory for the ``[evaluator]`` table, validated here, not on a worker."""
    data = dict(table)
    kind = data.pop("kind", "pipeline")
    if kind not in EVALUATORS:
        raise ConfigError(f"unknown evaluator kind {kind!r}; valid: {', '.join(EVALUATORS)}")
    cls, settings = EVALUATORS[kind]
    check_keys(data, ["kind", *(f.name for f in fields(settings))], f"[evaluator] of kind {kind!r}")
    return functools.partial(cls, settings(**data))


def evaluator_metrics(table: Mapping[str, Any]) -> tuple[str, ...]:
    """The metrics of the ``[evaluator]`` table's kind that can be objectives (all are minimised)."""
    return EVALUATORS[table.get("kind", "pipeline")][0].metrics
