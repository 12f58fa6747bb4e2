"""What forecast steps cost in memory: the tensors the runtime keeps between UNet calls, by forecast order.

    python experiments/forecast_memory.py        # seconds: counted on the meta device

A schedule whose highest forecast order is k keeps the last k + 1 computed values of every cached
tensor (and of the output, for reuse steps) instead of one. This runs SD 1.5's UNet at 512x512
(latent 64) and the shipped shapes UNet at its own size, batch 2 (one image with classifier-free
guidance), on the meta device through ``prunesched.apply``: k + 1 full steps, then a branch-0 step
of order k, after which it sums the distinct tensors the run state holds (float32 and float16).

Writes experiments/results/forecast_memory.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel

import prunesched
from prunesched import Schedule, StepPlan
from prunesched.models import shapes
from prunesched.models.configs import SD15_UNET
from prunesched.models.loading import load_pipeline

ROOT = Path(__file__).resolve().parent
BATCH = 2


def tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor in ``value`` (nested tuples, lists, dicts)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [t for v in value for t in tensors(v)] if isinstance(value, (tuple, list)) else []


def kept_mib(unet: UNet2DConditionModel, latent: int, context: int, order: int) -> float:
    """MiB the run state holds after ``order + 1`` full steps and a branch-0 step that forecasts at ``order``."""
    pipe = SimpleNamespace(unet=unet, scheduler=DDIMScheduler())
    steps = (StepPlan("full"),) * (order + 1) + (StepPlan(0, forecast=order),)
    sample = torch.empty(BATCH, unet.config.in_channels, latent, latent, device="meta", dtype=unet.dtype)
    text = torch.empty(BATCH, context, unet.config.cross_attention_dim, device="meta", dtype=unet.dtype)
    pipe.scheduler.set_timesteps(len(steps))
    with prunesched.apply(pipe, Schedule(steps=steps)) as handle, torch.inference_mode():
        for t in pipe.scheduler.timesteps:
            out = unet(sample, t, text).sample  # before looking up scheduler.step, which the first call wraps
            pipe.scheduler.step(out, t, sample)
        assert [r.forecast for r in handle.records] == [0] * (order + 1) + [order]
        state = handle._state
        distinct = {id(t): t for t in tensors([state.caches, state.outputs])}.values()  # a down block returns its last skip twice
    return sum(t.numel() * t.element_size() for t in distinct) / 2**20


def main() -> None:
    pipe = load_pipeline(shapes.NAME)
    latent, pixels = pipe.unet.config.sample_size, pipe.unet.config.sample_size * pipe.vae_scale_factor
    with torch.device("meta"):
        models = {
            "SD 1.5, 512x512": (UNet2DConditionModel.from_config(SD15_UNET), 64, 77),
            f"shapes, {pixels}x{pixels}": (UNet2DConditionModel.from_config(pipe.unet.config), latent, pipe.tokenizer.model_max_length),
        }
    report: dict[str, Any] = {"batch": BATCH, "schedule": "k + 1 full steps, then branch 0 at forecast order k", "mib": {}}
    for name, (unet, latent, context) in models.items():
        for dtype in (torch.float32, torch.float16):
            kept = [kept_mib(unet.to(dtype), latent, context, order) for order in (0, 1, 2)]
            report["mib"][f"{name}, {str(dtype).removeprefix('torch.')}"] = {f"order {k}": round(m, 1) for k, m in enumerate(kept)}
            print(name, dtype, [f"{m:.1f} MiB" for m in kept], flush=True)
    out = ROOT / "results" / "forecast_memory.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
