"""``prunesched bench step``: per-step latency of every cache choice and prune ratio on the SD 1.5 UNet.

The UNet is built from SD 1.5's config with random weights (cost does not depend on the
weights). Each configuration is timed inside a real denoising loop driven like a pipeline drives
it (:class:`~prunesched.bench.loop.DenoiserLoop`: DDIM, one UNet call and one ``scheduler.step``
per iteration), so the runtime's own step tracking and cache logic are part of every number. The
real peers, tomesd and DeepCache, are timed in the same loop. Text encoding and VAE decoding are
not part of a step. Schedules are composed from the measured steps by the evaluation's cost model
(:func:`cost_table`). With ``compile`` the full, cache and reuse steps are timed eagerly and with the
UNet compiled (:func:`measure_cache_steps`), and nothing else.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import statistics
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from types import SimpleNamespace
from typing import Any

import diffusers
import torch
from diffusers import DDIMScheduler, PNDMScheduler, UNet2DConditionModel

import prunesched
from prunesched import Schedule, StepPlan
from prunesched.bench.loop import DenoiserLoop, inputs_like
from prunesched.bench.paired_timing import RELATIVE, Timing, alternating, paired
from prunesched.evaluation.cost import FULL, CostTable, label
from prunesched.models.configs import SD15_UNET
from prunesched.models.tiny import SD_SCHEDULER
from prunesched.runtime.paper_tables import dato_ours_b1
from prunesched.runtime.schedule import Cache
from prunesched.timing import ZERO, Sample, device_name, timing_device


@dataclass(frozen=True)
class StepBenchConfig:
    """What ``prunesched bench step`` measures.

    Attributes:
        latent: latent side (64 = 512x512 images on SD 1.5).
        batch: UNet batch (2 = one image with classifier-free guidance).
        repeats: timed [full, step] pairs per configuration; medians are reported.
        ratios: prune ratios to measure for each method and for tomesd.
        branches: DeepCache branch ids to measure, ours and DeepCache's.
        methods: token methods to measure at each ratio.
        e2e_latent: latent side of the end-to-end check of the DaTo Table 6 schedule (0 skips it).
        device: ``"auto"`` picks CUDA when available (then fp16), else the CPU (fp32).
        compile: a ``torch.compile`` backend (``"inductor"``): time the full, cache and reuse steps
            eagerly and with the UNet compiled by it, and no pruning step, peer or Table 6 check
            (pruning recompiles at every step under torch.compile, see docs/runtime.md). Empty: no compiling.
    """

    latent: int = 64
    batch: int = 2
    repeats: int = 3
    ratios: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
    branches: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = ("sito", "dato", "random")
    e2e_latent: int = 32
    device: str = "auto"
    compile: str = ""


def sd15_loop(unet: UNet2DConditionModel, latent: int, batch: int) -> DenoiserLoop:
    """UNet calls driven like the SD 1.5 pipeline drives them (DDIM from SD 1.5's scheduler config), on the UNet's device."""
    tensor = inputs_like(unet)
    sample = tensor(batch, unet.config.in_channels, latent, latent)
    context = tensor(batch, 77, unet.config.cross_attention_dim)
    scheduler = DDIMScheduler.from_config(PNDMScheduler(**SD_SCHEDULER).config)

    def call(sample: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(sample, t, encoder_hidden_states=context).sample

    return DenoiserLoop(SimpleNamespace(unet=unet, scheduler=scheduler), call, sample)


@contextlib.contextmanager
def _selection_timer(loop: DenoiserLoop, handle: prunesched.PatchHandle) -> Iterator[list[Sample]]:
    """The time of token selection in each UNet call of the loop (the part a method adds besides the gathers),
    measured through the handle's selection timer (:meth:`prunesched.PatchHandle.time_selection`)."""
    per_call: list[Sample] = []

    @contextlib.contextmanager
    def region() -> Iterator[None]:
        spent: list[Sample] = []
        with loop.watch.region(spent):
            yield
        per_call[-1] += spent[0]

    hook = loop.pipe.unet.register_forward_pre_hook(lambda *_: per_call.append(ZERO))
    handle.time_selection(region)
    try:
        yield per_call
    finally:
        handle.time_selection(None)
        hook.remove()


def _entry(times: list[Sample], selection: list[Sample] | None = None) -> dict[str, Any]:
    """One configuration from a loop of alternating [full, X] pairs (the first pair is a warm-up).

    ``selection`` holds the token-selection time of every UNet call of the loop.
    """
    entry = paired(times)
    if selection and any(s.cpu for s in selection):
        chosen = Timing(tuple(selection[3::2])).median
        entry["selection_median_s"] = chosen.wall
        entry["selection_share_of_step"] = chosen.wall / entry["median_s"]
    return entry


def _ours(loop: DenoiserLoop, cache: Cache, prune: float, method: str, repeats: int) -> dict[str, Any]:
    schedule = alternating(StepPlan(cache, prune), repeats, prunesched.runtime.METHODS[method]())
    times: list[Sample] = []
    with prunesched.apply(loop.pipe, schedule) as handle, _selection_timer(loop, handle) as selection:
        loop.drive(len(schedule), lambda _i: loop.watch.region(times))
    return _entry(times, selection)


def measure_steps(loop: DenoiserLoop, config: StepBenchConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """Our step kinds, keyed like ``branch0``, ``reuse``, ``sito@0.5``, ``dato@0.5/branch0``, plus ``full``.

    ``full`` gathers the reference full steps of every configuration. Each entry names the step plan
    it timed as the cost model labels it (``plan``, :func:`prunesched.evaluation.cost.label`) and the
    token method that pruned in it (``method``; None when the step prunes nothing, which no method
    changes): what :func:`cost_table` composes schedules from.
    """
    kinds: list[tuple[str, Cache, float, str]] = [(f"branch{b}", b, 0.0, "sito") for b in config.branches]
    kinds.append(("reuse", "reuse", 0.0, "sito"))
    kinds += [(f"{m}@{r}", "full", r, m) for m in config.methods for r in config.ratios]
    # DaTo's cache steps prune too: composing Table 6 needs them
    kinds += [(f"dato@{r}/branch0", 0, r, "dato") for r in config.ratios if "dato" in config.methods]
    results: dict[str, Any] = {}
    for name, cache, prune, method in kinds:
        plan = {"plan": label(StepPlan(cache, prune)), "method": method if prune else None}
        results[name] = plan | _ours(loop, cache, prune, method, config.repeats)
        log(f"{name}: {results[name]['median_s']:.3f} s = {results[name][RELATIVE]:.3f} x full")
    references = [r for entry in results.values() for r in entry["reference_full_s"]]
    results["full"] = {"plan": FULL, "method": None, "median_s": statistics.median(references), "repeats_s": references, RELATIVE: 1.0}
    return results


def cost_table(steps: dict[str, Any], method: str) -> CostTable:
    """The measured step costs as the cost model's table for ``method``, so that a schedule's predicted cost is
    :meth:`CostTable.steps`, the evaluation's own composition (the first step full, reuse steps at the reuse cost).

    The table holds the plans ``method`` pruned in and the unpruned plans (full, cache and reuse steps),
    each relative to the full step; it has no overhead, so a prediction counts denoiser calls only.
    """
    relative = {entry["plan"]: entry[RELATIVE] for entry in steps.values() if entry["method"] in (method, None)}
    return CostTable(key={"benchmark": "prunesched bench step", "method": method}, relative=relative)


def measure_peers(loop: DenoiserLoop, config: StepBenchConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """tomesd at each ratio and DeepCache at each branch, alternating with full steps in the same loop."""
    import tomesd
    from DeepCache import DeepCacheSDHelper

    iterations = 2 * (1 + config.repeats)
    results: dict[str, Any] = {}

    def timed(name: str, before: Callable[[int], None] = lambda _i: None) -> None:
        """Time the peer's loop as it stands; ``before(i)`` runs untimed ahead of iteration i."""
        times: list[Sample] = []

        @contextlib.contextmanager
        def around(i: int) -> Iterator[None]:
            before(i)
            with loop.watch.region(times):
                yield

        loop.drive(iterations, around)
        results[name] = _entry(times)
        log(f"{name}: {results[name]['median_s']:.3f} s = {results[name][RELATIVE]:.3f} x full")

    for ratio in config.ratios:

        def toggle(i: int, ratio: float = ratio) -> None:  # odd iterations merge tokens, even ones are full
            tomesd.remove_patch(loop.pipe.unet)
            if i % 2:
                tomesd.apply_patch(loop.pipe.unet, ratio=ratio)

        try:
            timed(f"tomesd@{ratio}", toggle)
        finally:
            tomesd.remove_patch(loop.pipe.unet)
    for branch in config.branches:
        helper = DeepCacheSDHelper(pipe=loop.pipe)
        helper.set_params(cache_interval=2, cache_branch_id=branch)  # even iterations full, odd ones partial
        helper.enable()
        try:
            timed(f"deepcache/branch{branch}")
        finally:
            helper.disable()
            vars(loop.pipe.unet).pop("forward", None)  # DeepCache re-sets forward on the instance
    return results


def measure_cache_steps(loops: dict[str, DenoiserLoop], config: StepBenchConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """The full, cache and reuse steps of each loop (``eager``, ``compiled``), timed in generations of one round
    [full, branch b, ..., full, reuse], the loops taking turns.

    One schedule for all: a compiled UNet has one graph per kind of step for the cache wrappers a
    schedule installs, and another set of branches would compile its own. Each loop's first round
    compiles its graphs and is the warm-up (``first_round_s``: each call, compiling included); then
    each kind is paired with the full step just before it (``steps``, keyed as in
    :func:`measure_steps`). Taking turns also pairs the loops: ``over_eager`` is, per step, the
    median over timed rounds of the other loop's time over the eager loop's in the round before.
    """
    kinds: list[Cache] = [*config.branches, "reuse"]
    one_round = Schedule(steps=tuple(plan for kind in kinds for plan in (StepPlan("full"), StepPlan(kind))))
    rounds: dict[str, list[list[Sample]]] = {side: [] for side in loops}
    for _ in range(1 + config.repeats):
        for side, loop in loops.items():
            rounds[side].append(loop.time_schedule(one_round))
    names = ["reuse" if kind == "reuse" else f"branch{kind}" for kind in kinds]
    result: dict[str, Any] = {}
    for side, timed in rounds.items():
        steps: dict[str, Any] = {}
        for k, name in enumerate(names):
            pairs = [t for r in timed for t in r[2 * k : 2 * k + 2]]
            steps[name] = {"plan": label(one_round.steps[2 * k + 1]), "method": None} | paired(pairs)
            log(f"{side} {name}: {steps[name]['median_s']:.3f} s = {steps[name][RELATIVE]:.3f} x full")
        references = [r for entry in steps.values() for r in entry["reference_full_s"]]
        steps["full"] = {"plan": FULL, "method": None, "median_s": statistics.median(references), "repeats_s": references, RELATIVE: 1.0}
        result[side] = {"steps": steps, "first_round_s": [{"plan": label(p), "s": t.wall} for p, t in zip(one_round.steps, timed[0])]}
        if side != "eager":
            ratios = [[t.wall / e.wall for t, e in zip(r, eager_r)] for r, eager_r in zip(timed[1:], rounds["eager"][1:])]
            over = {name: statistics.median(r[2 * k + 1] for r in ratios) for k, name in enumerate(names) if name != "reuse"}
            over["full"] = statistics.median(x for r in ratios for x in r[0::2])
            result[side]["over_eager"] = over
            log(f"{side} over eager: " + ", ".join(f"{name} {ratio:.2f}" for name, ratio in over.items()))
    return result


def table6_check(loop: DenoiserLoop, steps: dict[str, Any]) -> dict[str, Any]:
    """DaTo Table 6 "Ours-b1": composed from step costs, and measured end to end in one real run."""
    schedule = dato_ours_b1()
    result = _composed(schedule, steps)
    all_full = Schedule.uniform(len(schedule))
    before = sum(loop.time_schedule(all_full), ZERO)  # all-full runs on both sides cancel slow drift
    measured = sum(loop.time_schedule(schedule), ZERO)
    after = sum(loop.time_schedule(all_full), ZERO)
    measured_full = Sample((before.wall + after.wall) / 2, (before.cpu + after.cpu) / 2)
    result.update(measured_s=measured.wall, measured_all_full_s=measured_full.wall, measured_speedup=measured_full.wall / measured.wall)
    result.update(cpu_measured_s=measured.cpu, cpu_measured_all_full_s=measured_full.cpu, cpu_speedup=measured_full.cpu / measured.cpu)
    result["prediction_error"] = result["predicted_speedup"] / result["measured_speedup"] - 1
    return result


def run_step_bench(config: StepBenchConfig, log: Callable[[str], None] = print, unet: UNet2DConditionModel | None = None) -> dict[str, Any]:
    """Run the whole benchmark and return the JSON-ready result, goals included.

    ``unet`` replaces the SD 1.5 UNet (tests pass a tiny one); it is used on its own device and dtype.
    """
    model = "a UNet given by the caller"
    if unet is None:
        model = "SD 1.5 UNet architecture from its config, random weights"
        device, dtype = timing_device(config.device)
        torch.manual_seed(0)
        unet = UNet2DConditionModel(**SD15_UNET).to(device, dtype).eval()
    param = next(unet.parameters())
    device, dtype = param.device, param.dtype
    loop = sd15_loop(unet, config.latent, config.batch)
    loop.drive(2, lambda _i: contextlib.nullcontext())  # the first calls in a process pay one-off allocation costs
    log(f"{model}: latent {config.latent}x{config.latent}, batch {config.batch}, {dtype} on {device}")
    if config.compile:
        caching = replace(config, methods=(), ratios=())
        compiled_loop = sd15_loop(torch.compile(unet, backend=config.compile), config.latent, config.batch)
        log(f"eager and {config.compile}-compiled rounds, taking turns; the first compiled round compiles")
        sides = measure_cache_steps({"eager": loop, "compiled": compiled_loop}, caching, log)
        return {
            "benchmark": "prunesched bench step",
            "meta": _meta(caching, model, device, dtype, unet),
            **sides["eager"],
            "peers": {},
            "compiled": {"backend": config.compile, **sides["compiled"]},
            "goals": goals({"steps": sides["eager"]["steps"], "peers": {}}),
        }

    steps = measure_steps(loop, config, log)
    peers = measure_peers(loop, config, log)
    result: dict[str, Any] = {
        "benchmark": "prunesched bench step",
        "meta": _meta(config, model, device, dtype, unet),
        "steps": steps,
        "peers": peers,
    }
    needed = sorted({s.prune for s in dato_ours_b1().steps if s.prune} - set(config.ratios))
    if needed:
        result["dato_table6"] = {"skipped": f"needs step costs at ratios {needed}; pass them in --ratios"}
    else:
        result["dato_table6"] = {"composed_at_latent": {"latent": config.latent, **_composed(dato_ours_b1(), steps)}}
        if config.e2e_latent:
            small = sd15_loop(unet, config.e2e_latent, config.batch)
            log(f"cost table at latent {config.e2e_latent} for the DaTo Table 6 end-to-end check")
            small_config = StepBenchConfig(**{**asdict(config), "branches": (0,), "methods": ("dato",), "latent": config.e2e_latent})
            small_steps = measure_steps(small, small_config, log)
            result["dato_table6"]["end_to_end_at_latent"] = {"latent": config.e2e_latent, **table6_check(small, small_steps)}
    result["goals"] = goals(result)
    return result


def _composed(schedule: Schedule, steps: dict[str, Any]) -> dict[str, Any]:
    """A DaTo schedule's predicted cost in full steps, composed by the cost model from the measured steps."""
    predicted = cost_table(steps, "dato").steps(schedule)
    return {"steps": len(schedule), "predicted_full_steps": predicted, "predicted_speedup": len(schedule) / predicted}


def goals(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals, each with the measured value and whether it is met (on paired costs, see ``RELATIVE``)."""
    steps, peers = result["steps"], result["peers"]
    out: dict[str, Any] = {}
    at_half = [m for m in ("sito", "dato", "random") if f"{m}@0.5" in steps]
    for method in at_half:
        share = steps[f"{method}@0.5"]["selection_share_of_step"]
        out[f"{method}_selection_share_at_0.5"] = {"value": share, "goal": "<= 0.05", "met": share <= 0.05}
    for key, value in steps.items():
        if "@" in key and "/" not in key and f"tomesd@{key.split('@')[1]}" in peers:
            ratio = value[RELATIVE] / peers[f"tomesd@{key.split('@')[1]}"][RELATIVE]
            out[f"{key}_vs_tomesd"] = {"value": ratio, "goal": "<= 1", "met": ratio <= 1}
    if "branch0" in steps:
        share = steps["branch0"][RELATIVE]
        out["branch0_share_of_full"] = {"value": share, "goal": "<= 0.15", "met": share <= 0.15}
        for branch in (k.removeprefix("deepcache/branch") for k in peers if k.startswith("deepcache/")):
            ratio = steps[f"branch{branch}"][RELATIVE] / peers[f"deepcache/branch{branch}"][RELATIVE]
            out[f"branch{branch}_vs_deepcache"] = {"value": ratio, "goal": "<= 1", "met": ratio <= 1}
    table6 = result.get("dato_table6", {})
    if "composed_at_latent" in table6:
        composed = table6["composed_at_latent"]["predicted_speedup"]
        out["dato_table6_composed_speedup"] = {"value": composed, "goal": ">= 5", "met": composed >= 5}
    if "end_to_end_at_latent" in table6:
        measured = table6["end_to_end_at_latent"]["measured_speedup"]
        out["dato_table6_end_to_end_speedup"] = {"value": measured, "goal": ">= 5", "met": measured >= 5}
    return out


def _meta(config: StepBenchConfig, model: str, device: torch.device, dtype: torch.dtype, unet: UNet2DConditionModel) -> dict[str, Any]:
    processors = sorted({type(p).__name__ for p in unet.attn_processors.values()})
    return {
        "config": asdict(config),
        "model": model,
        "device": device_name(device),
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "dtype": str(dtype).removeprefix("torch."),
        "attention_processors": processors,
        "timer": "CUDA events" if device.type == "cuda" else "time.perf_counter",
        "scope": "one UNet call per denoising iteration; warm-up and cache-filling steps excluded; median of repeats; "
        "ratios and goals are medians of (step / the full step timed just before it) over alternating pairs",
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "prunesched": prunesched.__version__,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
