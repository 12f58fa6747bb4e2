"""``prunesched bench cat``: CAT pruning's compute and latency on the SD3-medium transformer.

MACs are counted with torch's ``FlopCounterMode`` on the ``meta`` device over whole generations
through ``prunesched.apply``, token selection and the one K-means included, so the paper's
1024x1024 (latent 128: 4,096 image tokens) costs neither compute nor weights. Latency is
measured with random weights at a latent the device can handle, as the median over
``[full, CAT]`` pairs of the CAT step's time relative to the full step before it.

The paper (CAT Pruning, Table 2): SD3 at 28 steps, t0 = 8 and alpha = 0.3 takes 90.28 T MACs
instead of 168.28 T (46.4 % fewer) and runs 1.82x faster end to end on an A5000 in fp16.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import SD3Transformer2DModel

from prunesched import Schedule
from prunesched.bench.goals import latency_tracks_macs, matches_paper
from prunesched.bench.loop import dit_loop
from prunesched.bench.paired_timing import RELATIVE, alternating, paired
from prunesched.bench.profiling import profile_pair
from prunesched.models.configs import SD3_MEDIUM_TRANSFORMER
from prunesched.timing import timing_device

PAPER_MACS = {"full": 168.28e12, "cat": 90.28e12}
"""SD3-medium at 1024x1024, 28 steps, per image (CAT Pruning, Table 2)."""
PAPER_REDUCTION = 1 - PAPER_MACS["cat"] / PAPER_MACS["full"]
PAPER_SPEEDUP = 1.82


@dataclass(frozen=True)
class CatBenchConfig:
    """What ``prunesched bench cat`` measures (the defaults are the paper's SD3 setting).

    Attributes:
        transformer: the transformer config (SD3-medium's by default; the test uses a tiny one).
        latent: latent side for the MAC count (128 = 1024x1024 images on SD3).
        batch: transformer batch (2 = one image with classifier-free guidance).
        text_tokens: conditioning tokens (SD3's pipeline: 77 CLIP + 256 T5).
        steps: denoising steps of the generation.
        t0: full steps before CAT starts.
        alpha: fraction of the image tokens each CAT step recomputes.
        latency_latent: latent side of the timed runs (0: no timing).
        repeats: timed pairs.
        profile: also record the busiest operators of one full and one CAT call (:func:`profile_pair`).
    """

    transformer: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(SD3_MEDIUM_TRANSFORMER))
    latent: int = 128
    batch: int = 2
    text_tokens: int = 333
    steps: int = 28
    t0: int = 8
    alpha: float = 0.3
    latency_latent: int = 32
    repeats: int = 2
    profile: bool = False


def count_macs(config: CatBenchConfig, latent: int) -> dict[str, list[int]]:
    """MACs of every step of a full and of a CAT generation at ``latent``, counted on the meta device."""
    with torch.device("meta"):
        transformer = SD3Transformer2DModel.from_config(config.transformer)
    loop = dit_loop(transformer, latent, config.batch, config.text_tokens)
    schedules = {"full": Schedule.uniform(config.steps), "cat": Schedule.cat(config.steps, config.t0, config.alpha)}
    return {name: loop.count_macs(schedule) for name, schedule in schedules.items()}


def time_steps(config: CatBenchConfig, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """A CAT step's time relative to the full step timed just before it, with random weights.

    The first CAT step of the loop has only one computed step before it and runs in full (the
    warm-up pair); the next one clusters, so the one-time K-means is inside the timed pairs.
    """
    transformer = SD3Transformer2DModel.from_config(config.transformer).to(device, dtype).eval()
    loop = dit_loop(transformer, config.latency_latent, config.batch, config.text_tokens)
    pruned = Schedule.cat(1, t0=0, alpha=config.alpha)
    timing = paired(loop.time_schedule(alternating(pruned.steps[0], config.repeats, pruned.method)))
    if config.profile:  # past the warm-up pair and the one that clusters: a steady CAT step
        timing["profile"] = profile_pair(loop, alternating(pruned.steps[0], 2, pruned.method))
    return timing


def run_cat_bench(config: CatBenchConfig, log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """MACs over a generation at the paper's resolution, latency at ``latency_latent``, and the issue's goals."""
    log(f"counting MACs of {config.steps}-step generations at latent {config.latent} on the meta device")
    macs = count_macs(config, config.latent)
    reduction = 1 - sum(macs["cat"]) / sum(macs["full"])
    result: dict[str, Any] = {
        "config": dataclasses.asdict(config)
        | {"transformer": "SD3-medium" if config.transformer == SD3_MEDIUM_TRANSFORMER else config.transformer},
        "macs_per_generation": {name: sum(steps) for name, steps in macs.items()},
        "macs_per_step": macs,
        "mac_reduction": reduction,
        "paper": {"macs_per_image": PAPER_MACS, "mac_reduction": PAPER_REDUCTION, "speedup": PAPER_SPEEDUP},
    }
    goals = {"mac_reduction_within_5_percent_of_paper": matches_paper(reduction, PAPER_REDUCTION)}
    if config.latency_latent:
        device, dtype = timing_device()
        log(f"timing [full, CAT] pairs at latent {config.latency_latent} on {device} ({dtype})")
        timing = time_steps(config, device, dtype)
        small = count_macs(config, config.latency_latent)
        step_reduction = 1 - small["cat"][-1] / small["full"][-1]  # a steady CAT step against a full one
        latency_reduction = 1 - timing[RELATIVE]
        pruned = config.steps - config.t0
        result["latency"] = {
            "device": str(device),
            "dtype": str(dtype),
            "latent": config.latency_latent,
            "cat_step": timing,
            "latency_reduction": latency_reduction,
            "mac_reduction_of_a_step_at_this_latent": step_reduction,
            "denoising_speedup_at_this_latent": config.steps / (config.t0 + pruned * timing[RELATIVE]),
        }
        goals["latency_reduction_at_least_80_percent_of_mac_reduction"] = latency_tracks_macs(latency_reduction, step_reduction)
    result["goals"] = goals
    return result
