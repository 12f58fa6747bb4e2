"""``prunesched bench atedm``: AT-EDM's compute and latency per step on the SDXL UNet at the paper's budget.

MACs are counted with torch's ``FlopCounterMode`` on the ``meta`` device: every operation of a
UNet call runs through ``prunesched.apply`` exactly as in a pipeline, but on shapes only, so the
paper's 1024x1024 resolution (latent 128) costs neither compute nor weights. Latency is measured
with random weights (cost does not depend on them) at a latent the device can handle, as the
median over ``[full, step]`` pairs of the step's time relative to the full step before it.

The paper (AT-EDM, Table 2): 6.7 T FLOPs per step for SDXL, 4.1 T with AT-EDM at rho = 63 % and
DSAP's prune-less blocks for the first 15 of 50 steps, i.e. 38.8 % fewer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from diffusers import EulerDiscreteScheduler, UNet2DConditionModel

from prunesched import AtedmConfig, PruneLess, Schedule, StepPlan
from prunesched.bench.goals import latency_tracks_macs, matches_paper
from prunesched.bench.loop import DenoiserLoop, inputs_like
from prunesched.bench.paired_timing import RELATIVE, paired
from prunesched.bench.profiling import profile_pair
from prunesched.models.configs import SDXL_UNET
from prunesched.timing import timing_device

PAPER_REDUCTION = 0.388
"""AT-EDM's FLOPs saving on SDXL at rho = 63 % with DSAP (6.7 T -> 4.1 T per step)."""


@dataclass(frozen=True)
class AtedmBenchConfig:
    """What ``prunesched bench atedm`` measures (the defaults are the paper's setting).

    Attributes:
        unet: the UNet config (SDXL's by default; the test uses a tiny one).
        latent: latent side for the MAC count (128 = 1024x1024 images on SDXL).
        batch: UNet batch (2 = one image with classifier-free guidance).
        ratio: AT-EDM's prune ratio rho in every attention block.
        steps: denoising steps of the generation the per-step average is over.
        tau: DSAP's prune-less steps.
        iterations: G-WPR iterations (a fixed count: the meta device has no values to test convergence on).
        latency_latent: latent side of the timed runs (0: no timing).
        repeats: timed pairs per configuration.
        profile: also record the busiest operators of one full and one AT-EDM call (:func:`profile_pair`).
    """

    unet: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(SDXL_UNET))
    latent: int = 128
    batch: int = 2
    ratio: float = 0.63
    steps: int = 50
    tau: int = 15
    iterations: int = 10
    latency_latent: int = 32
    repeats: int = 3
    profile: bool = False


def sdxl_loop(unet: UNet2DConditionModel, latent: int, batch: int) -> DenoiserLoop:
    """UNet calls driven like the SDXL pipeline drives them (Euler, SDXL's added conditions), on the UNet's device."""
    config, tensor = unet.config, inputs_like(unet)
    text_dim = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
    scheduler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)  # SDXL's
    context = {
        "encoder_hidden_states": tensor(batch, 77, config.cross_attention_dim),
        "added_cond_kwargs": {"text_embeds": tensor(batch, text_dim), "time_ids": tensor(batch, 6)},
    }

    def call(sample: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(scheduler.scale_model_input(sample, t), t, **context).sample

    return DenoiserLoop(SimpleNamespace(unet=unet, scheduler=scheduler), call, tensor(batch, config.in_channels, latent, latent))


def step_schedules(config: AtedmBenchConfig, length: int, ratio: float | None = None) -> dict[str, Schedule]:
    """The step kinds a generation is made of: full, AT-EDM in every block, and AT-EDM with DSAP's blocks held."""
    method = AtedmConfig(iterations=config.iterations)
    pruned = Schedule(steps=(StepPlan("full", config.ratio if ratio is None else ratio),) * length, method=method, slots="all")
    return {
        "full": Schedule(steps=(StepPlan("full", 0.0),) * length, method=method, slots="all"),
        "atedm": pruned,
        "atedm_dsap_held": dataclasses.replace(pruned, prune_less=PruneLess(length)),
    }


def count_macs(config: AtedmBenchConfig, latent: int, ratio: float | None = None, kinds: Collection[str] | None = None) -> dict[str, int]:
    """MACs of one UNet call of each step kind at ``latent`` (those in ``kinds``, or all), counted on the meta device."""
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config.unet)
    loop, macs = sdxl_loop(unet, latent, config.batch), {}
    for name, schedule in step_schedules(config, 1, ratio).items():
        if kinds is not None and name not in kinds:
            continue
        macs[name] = loop.count_macs(schedule)[0]
    return macs


def dsap_average(config: AtedmBenchConfig, macs: dict[str, int]) -> float:
    """MACs per step over a generation whose first ``tau`` steps hold DSAP's blocks prune-less."""
    held = min(config.tau, config.steps)
    return (held * macs["atedm_dsap_held"] + (config.steps - held) * macs["atedm"]) / config.steps


def ratio_for_budget(config: AtedmBenchConfig, budget: float, latent: int) -> float:
    """The prune ratio at which a DSAP generation averages ``budget`` MACs per step (the paper keeps the budget fixed
    when it adds prune-less steps and raises the ratio instead); bisection to 0.005."""
    low, high = config.ratio, 0.99
    while high - low > 0.005:
        middle = (low + high) / 2
        pruned = count_macs(config, latent, middle, kinds=("atedm", "atedm_dsap_held"))  # the full step does not change
        low, high = (middle, high) if dsap_average(config, pruned) > budget else (low, middle)
    return high


def time_steps(config: AtedmBenchConfig, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Each pruned step kind's time relative to a full step timed just before it, with random weights."""
    unet = UNet2DConditionModel.from_config(config.unet).to(device, dtype).eval()
    loop, out = sdxl_loop(unet, config.latency_latent, config.batch), {}
    pairs = 1 + config.repeats  # the first pair warms up
    for name, schedule in step_schedules(config, 2 * pairs).items():
        if name != "full":
            out[name] = paired(loop.time_schedule(_alternated(schedule)))
    if config.profile:
        out["atedm"]["profile"] = profile_pair(loop, _alternated(step_schedules(config, 6)["atedm"]))
    return out


def _alternated(schedule: Schedule) -> Schedule:
    """``schedule`` with every even step full: [full, X] pairs of its step kind."""
    steps = tuple(StepPlan("full", 0.0) if i % 2 == 0 else s for i, s in enumerate(schedule.steps))
    return dataclasses.replace(schedule, steps=steps)


def run_atedm_bench(config: AtedmBenchConfig, log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """MACs at the paper's resolution (AT-EDM in every step, and with DSAP), latency at ``latency_latent``, and the goals.

    The paper's 4.1 T per step is AT-EDM at rho = 63 % in every block; with DSAP it raises rho
    to keep that budget, so both are reported: DSAP at the same rho, and the rho that restores the budget.
    """
    log(f"counting MACs at latent {config.latent} on the meta device")
    macs = count_macs(config, config.latent)
    reduction = 1 - macs["atedm"] / macs["full"]
    log("finding the ratio that keeps that budget with DSAP")
    result: dict[str, Any] = {
        "config": dataclasses.asdict(config) | {"unet": "SDXL" if config.unet == SDXL_UNET else config.unet},
        "macs_per_call": macs,
        "mac_reduction": reduction,
        "paper_reduction": PAPER_REDUCTION,
        "dsap": {
            "mac_reduction_at_the_same_ratio": 1 - dsap_average(config, macs) / macs["full"],
            "ratio_for_the_same_budget": ratio_for_budget(config, macs["atedm"], config.latent),
        },
    }
    goals = {"mac_reduction_within_5_percent_of_paper": matches_paper(reduction, PAPER_REDUCTION)}
    if config.latency_latent:
        device, dtype = timing_device()
        log(f"timing at latent {config.latency_latent} on {device} ({dtype})")
        timing = time_steps(config, device, dtype)
        small = count_macs(config, config.latency_latent)
        small_reduction = 1 - small["atedm"] / small["full"]
        latency_reduction = 1 - timing["atedm"][RELATIVE]
        result["latency"] = {
            "device": str(device),
            "dtype": str(dtype),
            "latent": config.latency_latent,
            "steps": timing,
            "latency_reduction": latency_reduction,
            "mac_reduction_at_this_latent": small_reduction,
        }
        goals["latency_reduction_at_least_80_percent_of_mac_reduction"] = latency_tracks_macs(latency_reduction, small_reduction)
    result["goals"] = goals
    return result
