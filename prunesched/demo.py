"""The demo: an embedded shapes model next to a few well-known schedules, in pictures and numbers.

It is the quickest way to see what caching and pruning do, on a laptop, without any download:
one row of images per schedule (same captions and seeds), with the judge's caption accuracy,
FID to the full model's images in the judge's feature space, PSNR, and the measured speed-up.
The UNet (``shapes``) runs DeepCache, SiTo and DaTo; the DiT (``shapes-dit``) block caches and CAT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from prunesched.evaluation.evaluate import PipelineEvaluator
from prunesched.evaluation.generation import load_images, tile
from prunesched.evaluation.settings import PipelineSettings
from prunesched.evaluation.stats import Metrics
from prunesched.models import shapes
from prunesched.models.loading import pipeline_defaults
from prunesched.runtime.paper_tables import dato_ours_b1
from prunesched.runtime.schedule import BlockCache, Schedule


def demo_schedules(steps: int, model: str = shapes.NAME) -> dict[str, Schedule]:
    """For a ``steps``-iteration loop of ``model``: all-full, then on the UNet DeepCache-style caching, SiTo at 0.5
    everywhere and DaTo's published table; on the DiT a block cache of its first and last block, DBCache's fixed
    F1B0 mask and CAT at its paper's t0 and alpha."""
    if model == shapes.DIT_NAME:
        return {
            "all full": Schedule.uniform(steps),
            "F1B1, N=3": Schedule.deepcache(steps, interval=3, branch=0),
            "DBCache F1B0, N=3": Schedule.deepcache(steps, interval=3, branch=BlockCache(1, 0)),
            "CAT 0.3": Schedule.cat(steps, t0=8, alpha=0.3),
        }
    dato = dato_ours_b1()
    return {
        "all full": Schedule.uniform(steps),
        "DeepCache, N=3": Schedule.deepcache(steps, interval=3, branch=0),
        "SiTo 0.5": Schedule.uniform(steps, prune=0.5, method="sito"),
        "DaTo Ours-b1": dato if len(dato) == steps else dato.resample(steps),
    }


@dataclass(frozen=True)
class DemoRow:
    name: str
    images: torch.Tensor
    metrics: Metrics


def run_demo(
    images: int = 8,
    num_inference_steps: int | None = None,
    repeats: int = 2,
    cache_dir: str | None = None,
    log: Callable[[str], None] = print,
    model: str = shapes.NAME,
) -> list[DemoRow]:
    """Generate ``model``'s full images and each demo schedule's (at the model's default steps unless
    ``num_inference_steps`` is given), score them, and time ``repeats`` paired runs."""
    default_steps, guidance_scale = pipeline_defaults(model)
    steps = num_inference_steps or default_steps
    settings = PipelineSettings(
        model=model,
        images=images,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        reference="model",
        repeats=repeats,
        cache_dir=cache_dir,
    )
    log(f"loading {model} and generating {images} full-model images ({steps} steps)...")
    evaluation = PipelineEvaluator(settings)
    rows = [DemoRow("full model", evaluation.full_images, {})]
    for name, schedule in demo_schedules(evaluation.steps, model).items():
        log(f"{name}: generating, scoring and timing...")
        metrics = evaluation.evaluate(schedule)
        generated = load_images(evaluation.folder / schedule.hash[:16], images)
        assert generated is not None  # keep_images is on, so evaluate() just wrote them
        rows.append(DemoRow(name, generated, metrics))
    return rows


def image_grid(rows: list[DemoRow], scale: int = 2, label_width: int = 150) -> Image.Image:
    """One row per schedule, its name and speed-up on the left, images upscaled ``scale`` times."""
    side = rows[0].images.shape[-1] * scale
    count = rows[0].images.shape[0]
    grid = Image.new("RGB", (label_width + count * side, len(rows) * side), "white")
    draw = ImageDraw.Draw(grid)
    for r, row in enumerate(rows):
        label = row.name
        if "relative_latency" in row.metrics:
            label += f"\n{1 / row.metrics['relative_latency']['value']:.2f}x faster"
        if "caption_accuracy" in row.metrics:
            label += f"\njudge {row.metrics['caption_accuracy']['value']:.0%}"
        draw.multiline_text((6, r * side + 6), label, fill="black")
        grid.paste(tile(row.images, count, scale), (label_width, r * side))
    return grid


def save_grid(rows: list[DemoRow], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(rows).save(path)
    return path
