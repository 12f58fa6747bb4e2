"""Does cache-dit, given prunesched's export, generate what prunesched's runtime generates?

    pip install -e ".[interop]"                # cache-dit 1.5.3: an optional extra, not in dev
    python experiments/cache_dit_agreement.py  # about a minute on 2 CPU cores

For the tiny SD3 (batched guidance), PixArt-Σ and Flux pipelines (random weights, 5 transformer
blocks, 8 steps at 32x32), each of three block-cache schedules (F1B0, F2B1 and the integer depth 0,
i.e. F1B1; full steps 0, 1 and 4) generates one image with ``prunesched.apply`` and one with
``cache_dit.enable_cache(pipe, **cache_dit.load_configs(config))``, where ``config`` is what
``prunesched export --format cache-dit`` writes (:func:`prunesched.runtime.interop.to_cache_dit`).
Records the largest pixel difference of each from the full model's image and from each other.

Writes experiments/results/cache_dit_agreement.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cache_dit
import numpy as np
import torch

import prunesched
from prunesched import BlockCache, Schedule, StepPlan
from prunesched.models.tiny import tiny_flux_pipeline, tiny_pixart_pipeline, tiny_sd3_pipeline
from prunesched.runtime.interop import to_cache_dit

ROOT = Path(__file__).resolve().parent
STEPS = 8
PIPELINES = {
    "sd3": (lambda: tiny_sd3_pipeline(layers=5), {}),
    "pixart": (lambda: tiny_pixart_pipeline(layers=5), {"use_resolution_binning": False, "clean_caption": False}),
    "flux": (lambda: tiny_flux_pipeline(layers=(2, 3)), {"max_sequence_length": 16}),
}
CACHES: tuple[int | BlockCache, ...] = (BlockCache(1, 0), BlockCache(2, 1), 0)


def generate(pipe: Any, extra: dict[str, Any]) -> np.ndarray:
    generator = torch.Generator().manual_seed(0)
    prompt = "a red circle above a blue square"
    return pipe(prompt, num_inference_steps=STEPS, height=32, width=32, generator=generator, output_type="np", **extra).images


def main() -> None:
    results: dict[str, Any] = {"cache_dit": cache_dit.__version__, "steps": STEPS, "pipelines": {}}
    for name, (build, extra) in PIPELINES.items():
        pipe = build()
        full = generate(pipe, extra)
        rows = results["pipelines"][name] = {}
        for cache in CACHES:
            schedule = Schedule(steps=tuple(StepPlan("full" if i in (0, 1, 4) else cache) for i in range(STEPS)))
            with prunesched.apply(pipe, schedule):
                ours = generate(pipe, extra)
            cache_dit.enable_cache(pipe, **cache_dit.load_configs(to_cache_dit(schedule)))
            theirs = generate(pipe, extra)
            cache_dit.disable_cache(pipe)
            rows[str(BlockCache.of(cache)) if isinstance(cache, BlockCache) else f"depth {cache}"] = row = {
                "prunesched_vs_full": float(np.abs(ours - full).max()),
                "cache_dit_vs_full": float(np.abs(theirs - full).max()),
                "prunesched_vs_cache_dit": float(np.abs(ours - theirs).max()),
            }
            print(name, cache, row)
    path = ROOT / "results" / "cache_dit_agreement.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
