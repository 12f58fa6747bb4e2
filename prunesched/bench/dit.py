"""``prunesched bench dit``: block caching's MACs on SD3-medium, PixArt-Σ and FLUX.1-dev at 1024x1024, and its
CPU latency on reduced-width transformers.

MACs are counted with torch's ``FlopCounterMode`` on the ``meta`` device over whole generations, every
transformer call going through ``prunesched.apply`` (:meth:`~prunesched.bench.loop.DenoiserLoop.count_macs`),
so a count shows what the runtime really computes and skips. Latency is the median over ``[full, X]`` pairs
of a cached step's time relative to the full step before it, with random weights; a schedule's speed-up at
that size is composed from those ratios by the evaluation's cost model.

The published anchor is cache-dit's FLUX.1-dev benchmark (``bench/cache/README.md``): 50 steps at
1024x1024 (4,096 image and 512 text tokens, one transformer call a step) take 3726.87 T FLOPs, its
DBCache(M) setting 944.75 T. They are calflops FLOPs (chengzegang's fork, which also counts
``scaled_dot_product_attention``): 2 per MAC of every matrix product, plus 5 per attention score (scale
and softmax) and a few per element of norms and activations, which ``FlopCounterMode`` does not count.
DBCache(M) (F1B0, 4 warm-up steps, at most 6 cached steps in a row, residual threshold 0.24) decides its
cached steps at run time; its figure implies how many steps it computed in full (:func:`implied_full_steps`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import FluxTransformer2DModel, PixArtTransformer2DModel, SD3Transformer2DModel

from prunesched import BlockCache, Schedule, StepPlan
from prunesched.bench.goals import latency_tracks_macs, matches_paper
from prunesched.bench.loop import DenoiserLoop, dit_loop
from prunesched.bench.paired_timing import RELATIVE, alternating, paired
from prunesched.evaluation.cost import FULL, CostTable, label
from prunesched.models.configs import FLUX1_DEV_TRANSFORMER, PIXART_SIGMA_TRANSFORMER, SD3_MEDIUM_TRANSFORMER
from prunesched.runtime.dit_layout import DiT, dit_blocks
from prunesched.timing import timing_device

CACHE_DIT_FLUX = {"full": 3726.87e12, "DBCache(M)": 944.75e12}
"""cache-dit's FLUX.1-dev FLOPs over 50 steps at 1024x1024, one image (calflops; see the module docstring)."""
CAT_PAPER = {"sd3-medium": 168.28e12, "pixart-sigma": 120.68e12}
"""CAT Pruning's full-model MACs over 28 steps at 1024x1024 per image (Table 2); it names neither its counter nor
whether guidance's second pass is in it."""


@dataclass(frozen=True)
class DitModel:
    """One DiT and how the bench drives it.

    Attributes:
        name: what tables call it.
        kind: its diffusers class.
        transformer: its config.
        steps: denoising steps of a generation.
        batch: transformer batch (2: one image with classifier-free guidance; 1: Flux's guidance-distilled call).
        text_tokens: conditioning tokens per call.
        latent: latent side (128 = 1024x1024 images, 4,096 image tokens).
    """

    name: str
    kind: type[DiT]
    transformer: Mapping[str, Any]
    steps: int
    batch: int
    text_tokens: int
    latent: int = 128

    def loop(self, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> DenoiserLoop:
        """The transformer built from its config, in its loop: on the meta device (shapes only) by default, else with
        random weights on ``device`` in ``dtype``."""
        if device is None:
            with torch.device("meta"):
                transformer = self.kind.from_config(dict(self.transformer))
        else:
            transformer = self.kind.from_config(dict(self.transformer)).to(device, dtype)
        return dit_loop(transformer.eval(), self.latent, self.batch, self.text_tokens)


MODELS = {
    "sd3-medium": DitModel("SD3-medium", SD3Transformer2DModel, SD3_MEDIUM_TRANSFORMER, steps=28, batch=2, text_tokens=333),
    "pixart-sigma": DitModel("PixArt-Σ", PixArtTransformer2DModel, PIXART_SIGMA_TRANSFORMER, steps=20, batch=2, text_tokens=300),
    "flux1-dev": DitModel("FLUX.1-dev", FluxTransformer2DModel, FLUX1_DEV_TRANSFORMER, steps=50, batch=1, text_tokens=512),
}
"""The pipelines' defaults: SD3 at 28 steps with CFG (77 CLIP + 256 T5 tokens); PixArt-Σ at its pipeline's 20 steps with
CFG (300 T5 tokens); FLUX.1-dev at 50 steps, as cache-dit counts it (512 T5 tokens, no second pass)."""

REDUCED = {
    "flux1-dev": dataclasses.replace(
        MODELS["flux1-dev"], name="FLUX.1-dev at width 512", transformer={**FLUX1_DEV_TRANSFORMER, "num_attention_heads": 4}
    ),
    "sd3-medium": dataclasses.replace(
        MODELS["sd3-medium"],
        name="SD3-medium at width 512",
        transformer={**SD3_MEDIUM_TRANSFORMER, "num_attention_heads": 8, "caption_projection_dim": 512},
    ),
}
"""The models timed on a CPU: every block of the real one at a narrower width (the share of blocks a step computes
is what block caching changes), with ``latency_latent`` and ``latency_text_tokens`` of the config."""


@dataclass(frozen=True)
class CacheRule:
    """A block-cache schedule for any number of steps: the first ``warmup`` steps and every ``interval``-th step
    (DeepCache's uniform rule) are full; the cached steps between take ``caches`` in turn, the first share of them
    the first cache (a mix from many blocks computed early to few late)."""

    caches: tuple[int | BlockCache, ...]
    interval: int
    warmup: int = 1

    @property
    def name(self) -> str:
        spans = " > ".join(str(c) if isinstance(c, BlockCache) else f"depth {c} ({BlockCache.of(c)})" for c in self.caches)
        return f"{spans} W{self.warmup} N{self.interval}" if self.warmup > 1 else f"{spans} N{self.interval}"

    def schedule(self, steps: int) -> Schedule:
        cached = [i for i in range(steps) if i >= self.warmup and i % self.interval]
        caches = {i: self.caches[len(self.caches) * k // len(cached)] for k, i in enumerate(cached)}
        return Schedule(steps=tuple(StepPlan(caches.get(i, "full")) for i in range(steps)))

    def to_dict(self) -> dict[str, Any]:
        return {"caches": [StepPlan(c).to_dict()["cache"] for c in self.caches], "interval": self.interval, "warmup": self.warmup}


DBCACHE_M_LIKE = CacheRule((BlockCache(1, 0),), interval=6, warmup=4)
"""F1B0 with 12 of FLUX's 50 steps full, as many as DBCache(M)'s published count implies (it picks them at run time)."""

RULES = (
    CacheRule((BlockCache(8, 0),), interval=3, warmup=4),
    CacheRule((BlockCache(1, 0),), interval=3, warmup=4),
    DBCACHE_M_LIKE,
    CacheRule((0,), interval=2),
    CacheRule((2,), interval=3),
    CacheRule((BlockCache(8, 0), 1, BlockCache(1, 0)), interval=4, warmup=4),
)
"""cache-dit's spans F8B0 (its default) and F1B0 with a full step every N after W warm-up steps (F1B0 W4 N6 computes
12 of FLUX's 50 steps in full, as many as DBCache(M)'s published count implies), integer depths b (the first and
last b + 1 blocks), and a mix."""


@dataclass(frozen=True)
class DitBenchConfig:
    """What ``prunesched bench dit`` measures.

    Attributes:
        models: the DiTs whose MACs are counted, by key (``flux1-dev`` is compared with cache-dit's counts).
        latency: the DiTs timed, by key (none when ``repeats`` is 0).
        rules: the block-cache schedules.
        latency_latent: latent side of the timed runs.
        latency_text_tokens: conditioning tokens of the timed runs.
        repeats: timed [full, cached] pairs per cache kind, after a warm-up pair.
    """

    models: Mapping[str, DitModel] = dataclasses.field(default_factory=lambda: dict(MODELS))
    latency: Mapping[str, DitModel] = dataclasses.field(default_factory=lambda: dict(REDUCED))
    rules: tuple[CacheRule, ...] = RULES
    latency_latent: int = 32
    latency_text_tokens: int = 64
    repeats: int = 3


def count_model(model: DitModel, rules: Sequence[CacheRule]) -> dict[str, Any]:
    """MACs over a generation of the full model and of every rule's schedule, and of one step of each kind."""
    loop = model.loop()
    schedules = {"full": Schedule.uniform(model.steps)} | {rule.name: rule.schedule(model.steps) for rule in rules}
    per_step = {name: loop.count_macs(schedule) for name, schedule in schedules.items()}
    step_macs: dict[str, int] = {}  # one step of each kind, by the cost model's label (every such step costs the same)
    for name, schedule in schedules.items():
        for i, (plan, macs) in enumerate(zip(schedule.steps, per_step[name])):
            step_macs.setdefault(label(plan, i == 0), macs)
    full = sum(per_step["full"])
    return {
        "model": model.name,
        "steps": model.steps,
        "batch": model.batch,
        "image_tokens": (model.latent // 2) ** 2,  # every one of these DiTs makes a token of each 2x2 latent pixels
        "text_tokens": model.text_tokens,
        "blocks": len(dit_blocks(loop.pipe.transformer)),
        "macs": {name: sum(steps) for name, steps in per_step.items()},
        "relative_to_full": {name: sum(steps) / full for name, steps in per_step.items()},
        "full_steps": {name: [plan.cache for plan in schedule.steps].count("full") for name, schedule in schedules.items()},
        "macs_per_step": step_macs,
    }


def implied_full_steps(published: float, steps: int, full_step: float, cached_step: float) -> float:
    """How many of ``steps`` steps were full if a generation costs ``published`` with the given step costs."""
    return (published - steps * cached_step) / (full_step - cached_step)


def flux_comparison(counted: dict[str, Any]) -> dict[str, Any]:
    """Our FLUX.1-dev counts beside cache-dit's, in FLOPs (2 per MAC), and the full steps DBCache(M)'s count implies."""
    ours = {"full": 2 * counted["macs"]["full"], "DBCache(M)": 2 * counted["macs"][DBCACHE_M_LIKE.name]}
    step = counted["macs_per_step"]
    implied = implied_full_steps(CACHE_DIT_FLUX["DBCache(M)"] / 2, counted["steps"], step[FULL], step[label(StepPlan(BlockCache(1, 0)))])
    return {
        "source": "cache-dit bench/cache/README.md: FLUX.1-dev, 50 steps, 1024x1024, calflops",
        "unit": "FLOPs per image (ours: 2 per MAC)",
        "published": CACHE_DIT_FLUX,
        "ours": ours,
        "ours_schedule_for_DBCache(M)": DBCACHE_M_LIKE.name,
        "difference": {name: ours[name] / CACHE_DIT_FLUX[name] - 1 for name in ours},
        "full_steps_implied_by_DBCache(M)": implied,
    }


def cat_comparison(key: str, counted: dict[str, Any]) -> dict[str, Any]:
    """CAT Pruning's full-model MACs at 28 steps beside ours at 28 steps, with guidance's two passes and with one."""
    both = 28 * counted["macs_per_step"][FULL]
    return {
        "source": "CAT Pruning, Table 2: 28 steps, 1024x1024, per image",
        "unit": "MACs",
        "published": CAT_PAPER[key],
        "ours_28_steps_two_passes": both,
        "ours_28_steps_one_pass": both // 2,
    }


def time_model(model: DitModel, config: DitBenchConfig, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Each cache kind of the rules timed against the full step before it, its MACs at the same size, and every rule's
    speed-up composed from the timed steps and from the MACs (the cost model: the first step full)."""
    small = dataclasses.replace(model, latent=config.latency_latent, text_tokens=config.latency_text_tokens)
    loop, meta = small.loop(device, dtype), small.loop()
    caches = list(dict.fromkeys(cache for rule in config.rules for cache in rule.caches))
    steps, time_table, mac_table = {}, {FULL: 1.0}, {FULL: 1.0}
    for cache in caches:
        name = label(StepPlan(cache))
        timing = paired(loop.time_schedule(alternating(StepPlan(cache), config.repeats)))
        macs = meta.count_macs(alternating(StepPlan(cache), 0))
        time_table[name], mac_table[name] = timing[RELATIVE], macs[1] / macs[0]
        steps[name] = {"time": timing, "macs_relative_to_full": mac_table[name]}
    by_time = CostTable({"benchmark": "prunesched bench dit", "cost": "time"}, relative=time_table)
    by_macs = CostTable({"benchmark": "prunesched bench dit", "cost": "macs"}, relative=mac_table)
    speedups = {
        rule.name: {
            "by_time": model.steps / by_time.steps(rule.schedule(model.steps)),
            "by_macs": model.steps / by_macs.steps(rule.schedule(model.steps)),
        }
        for rule in config.rules
    }
    return {
        "model": small.name,
        "latent": small.latent,
        "text_tokens": small.text_tokens,
        "device": str(device),
        "dtype": str(dtype),
        "steps": steps,
        "denoising_speedup_at_this_size": speedups,
    }


def run_dit_bench(config: DitBenchConfig, log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """MACs at full size, latency at ``latency_latent``, the published counts beside ours, and the goals."""
    goals: dict[str, Any] = {}
    counts = {}
    for key, model in config.models.items():
        log(f"counting MACs of {model.name}: {model.steps}-step generations at latent {model.latent} on the meta device")
        counts[key] = counted = count_model(model, config.rules)
        if key == "flux1-dev" and DBCACHE_M_LIKE in config.rules:
            counted["published"] = comparison = flux_comparison(counted)
            goals["flux1_dev_full_within_5_percent_of_cache_dit"] = matches_paper(1 + comparison["difference"]["full"], 1.0)
        elif key in CAT_PAPER:
            counted["published"] = cat_comparison(key, counted)
    result: dict[str, Any] = {"rules": {rule.name: rule.to_dict() for rule in config.rules}, "macs": counts, "latency": {}}
    device, dtype = timing_device()
    for key, model in config.latency.items() if config.repeats else ():
        log(f"timing [full, cached] pairs of {model.name} at latent {config.latency_latent} on {device} ({dtype})")
        result["latency"][key] = timed = time_model(model, config, device, dtype)
        for name, step in timed["steps"].items():
            goals[f"{key} {name}: latency reduction >= 0.8 of the MAC reduction"] = latency_tracks_macs(
                1 - step["time"][RELATIVE], 1 - step["macs_relative_to_full"]
            )
    result["goals"] = goals
    return result
