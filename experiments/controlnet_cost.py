"""What the ControlNet of an SD 1.5 ControlNet pipeline computes and keeps at each kind of step.

    python experiments/controlnet_cost.py        # seconds: counted on the meta device

SD 1.5's UNet and a ControlNet made from it (``ControlNetModel.from_unet``, the conditioning
embedding of the released ControlNets) at 512x512 (latent 64), batch 2 (one image with
classifier-free guidance), counted with torch's ``FlopCounterMode`` on the meta device. Each step
kind X runs as a ``[full, X]`` schedule through ``prunesched.apply``, the ControlNet before the UNet
as diffusers' pipelines call them, and X's calls are counted: the ControlNet's MACs next to its
full call's, the UNet's for scale, and the memory the ControlNet's caches hold (float32).

Writes experiments/results/controlnet_cost.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from diffusers import ControlNetModel, DDIMScheduler, UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode

import prunesched
from prunesched import Schedule, StepPlan
from prunesched.models.configs import SD15_UNET
from prunesched.runtime.schedule import Cache
from prunesched.runtime.unet_layout import max_branch

ROOT = Path(__file__).resolve().parent
LATENT, BATCH = 64, 2


def mib(value: Any) -> float:
    """The MiB of every tensor in ``value`` (nested tuples, lists, dicts)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size() / 2**20
    if isinstance(value, dict):
        value = list(value.values())
    return sum(mib(v) for v in value) if isinstance(value, (tuple, list)) else 0.0


def step_cost(pipe: SimpleNamespace, cache: Cache) -> dict[str, float]:
    """The ControlNet's and the UNet's MACs at a step ``cache`` that follows a full step, and the ControlNet's caches."""
    sample = torch.empty(BATCH, 4, LATENT, LATENT, device="meta")
    context = torch.empty(BATCH, 77, 768, device="meta")
    control = torch.empty(BATCH, 3, 8 * LATENT, 8 * LATENT, device="meta")
    cost: dict[str, float] = {}
    pipe.scheduler.set_timesteps(2)
    with prunesched.apply(pipe, Schedule(steps=(StepPlan("full"), StepPlan(cache)))) as handle, torch.inference_mode():
        for t in pipe.scheduler.timesteps:
            counters = FlopCounterMode(display=False), FlopCounterMode(display=False)
            with counters[0]:
                down, mid = pipe.controlnet(sample, t, encoder_hidden_states=context, controlnet_cond=control, return_dict=False)
            with counters[1]:
                out = pipe.unet(sample, t, context, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
            pipe.scheduler.step(out, t, sample)
            cost["controlnet"], cost["unet"] = (counter.get_total_flops() // 2 for counter in counters)
        kept = {key: value for key, value in handle._state.cache().items() if key.startswith("controlnet")}
        cost["controlnet_cache_mib"] = mib(kept)
    return cost


def main() -> None:
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET).eval()
        controlnet = ControlNetModel.from_unet(unet, load_weights_from_unet=False).eval()
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    pipe = SimpleNamespace(unet=unet, controlnet=controlnet, scheduler=scheduler)
    kinds: list[Cache] = ["full", *range(max_branch(unet) + 1), "reuse"]
    steps = {str(kind): step_cost(pipe, kind) for kind in kinds}
    for entry in steps.values():
        entry["controlnet_share_of_full"] = entry["controlnet"] / steps["full"]["controlnet"]
    control = torch.empty(BATCH, 3, 8 * LATENT, 8 * LATENT, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        controlnet.controlnet_cond_embedding(control)
    embedding = counter.get_total_flops() // 2
    result = {
        "model": "SD 1.5 UNet and ControlNetModel.from_unet, meta device",
        "latent": LATENT,
        "batch": BATCH,
        "conditioning_embedding_macs": embedding,
        "steps": steps,
    }
    (ROOT / "results" / "controlnet_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"conditioning embedding {embedding / 1e9:.1f} G MACs per call")
    for kind, entry in steps.items():
        print(
            f"{kind:>6}: ControlNet {entry['controlnet'] / 1e9:6.1f} G ({entry['controlnet_share_of_full']:.3f} of its full call), "
            f"UNet {entry['unet'] / 1e9:6.1f} G; ControlNet caches {entry['controlnet_cache_mib']:.0f} MiB"
        )


if __name__ == "__main__":
    main()
