"""Evaluators: what a worker does with one candidate schedule, returning metrics only.

An evaluator is built once per worker (it may load a pipeline) and then called for many
schedules. Every metric is a :data:`Metric`: a value with the number of samples it came from
and a 95 % bootstrap interval when there are several, so a user can see when two points of a
front are not really different. The ``[evaluator]`` table of a search config names a kind of
:data:`EVALUATORS` and its keyword arguments; configs never name code to import.
"""

from __future__ import annotations

import functools
import inspect
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from prunesched.errors import ConfigError
from prunesched.runtime.schedule import Schedule, StepPlan

Metric = dict[str, Any]
"""``{"value": float, "n": int, "ci": [low, high] or None}``."""

Metrics = dict[str, Metric]


class Evaluator(Protocol):
    """Scores one schedule. ``steps`` is the loop length it accepts (None: any); ``device`` names where it runs."""

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


class SyntheticEvaluator:
    """A deterministic two-objective schedule problem with a known Pareto front, for tests and benchmarks.

    Each step adds a cost (full 1, branch b 0.3 (b + 1) capped at 0.9, reuse 0.02; pruning
    a fraction p scales a computed step's cost by 1 - 0.6 p) and an error weighted by how early
    the step is (early steps shape the image; DaTo §3.2): 1 for reuse, 0.3 / (b + 1) for a
    branch, plus 0.8 p² for pruning. Both objectives are sums over steps, so the exact front is
    computable (:func:`synthetic_front`). ``delay_s`` makes each evaluation take that long.
    """

    metrics = ("error", "cost")

    def __init__(self, *, delay_s: float = 0.0) -> None:
        if delay_s < 0:
            raise ConfigError(f"[evaluator] delay_s must be >= 0, got {delay_s!r}")
        self.delay_s = delay_s
        self.steps: int | None = None
        self.device = "cpu (synthetic)"

    def evaluate(self, schedule: Schedule) -> Metrics:
        if self.delay_s:
            time.sleep(self.delay_s)
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


class PipelineEvaluator:
    """Generates images with a schedule applied and scores them against the same pipeline's unaccelerated images.

    Common random numbers: every candidate gets the same prompts and per-image seeds. Quality is
    paired fidelity to the full model's images of the same seeds (``mse`` with its bootstrap
    interval over images, and ``psnr``); cost is the time of the pipeline call up to the latents
    (text encoding and the denoising loop; VAE decode excluded), median of ``repeats`` after a
    warm-up, and ``relative_latency``, the same time divided by this worker's own unaccelerated
    time, so heterogeneous workers compare. FID and KID arrive with the evaluation module.
    """

    metrics = ("mse", "psnr", "latency_s", "relative_latency")

    def __init__(
        self,
        *,
        model: str = "tiny-sd",
        prompts: Sequence[str] = ("a red circle", "a blue square", "a green triangle", "a yellow star"),
        images: int = 4,
        seed: int = 0,
        num_inference_steps: int = 10,
        guidance_scale: float = 7.5,
        repeats: int = 1,
    ) -> None:
        import torch

        from prunesched.bench.timing import Stopwatch
        from prunesched.models.tiny import PIPELINES

        if model not in PIPELINES:
            raise ConfigError(f"[evaluator] unknown model {model!r}; valid: {', '.join(PIPELINES)}")
        if images < 1 or repeats < 1 or num_inference_steps < 1 or not prompts:
            raise ConfigError("[evaluator] images, repeats and num_inference_steps must be >= 1 and prompts non-empty")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.pipe = PIPELINES[model]().to(self.device)
        self.prompts = [prompts[i % len(prompts)] for i in range(images)]
        self.seeds = [seed + i for i in range(images)]
        self.call = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale}
        self.repeats = repeats
        self.stopwatch = Stopwatch(torch.device(self.device))
        self.pipe.scheduler.set_timesteps(num_inference_steps)
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


EVALUATORS: dict[str, type] = {"synthetic": SyntheticEvaluator, "pipeline": PipelineEvaluator}


def evaluator_factory(table: Mapping[str, Any]) -> Callable[[], Evaluator]:
    """A picklable zero-argument factory for the ``[evaluator]`` table; unknown kinds and keys are refused here, not on a worker."""
    data = dict(table)
    kind = data.pop("kind", "pipeline")
    if kind not in EVALUATORS:
        raise ConfigError(f"unknown evaluator kind {kind!r}; valid: {', '.join(EVALUATORS)}")
    cls = EVALUATORS[kind]
    valid = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in [evaluator] of kind {kind!r}; valid: {', '.join(['kind'] + valid)}")
    return functools.partial(cls, **data)


def evaluator_metrics(table: Mapping[str, Any]) -> tuple[str, ...]:
    """The metric names the ``[evaluator]`` table's kind reports."""
    return EVALUATORS[table.get("kind", "pipeline")].metrics
