"""``prunesched bench gpu``: the GPU kit, every measurement that needs a GPU in one command of at most 8 minutes.

Users search on GPU clusters, so the numbers that matter are fp16 with CUDA events. On one GPU the kit
runs, in turn:

- ``step``: ``bench step`` on the SD 1.5 UNet at 512x512, next to tomesd and DeepCache, with DaTo's
  Ours-b1 end to end (51 iterations, PNDM's count at 50 steps) against all-full at 512x512 too;
- ``atedm``: ``bench atedm``, AT-EDM's SDXL steps timed at 1024x1024;
- ``cat``: ``bench cat``, CAT pruning's SD3-medium generation timed at 1024x1024;
- ``search``: a 2-generation embedded-default search (shapes model, baselines, validation) whose Ray
  evaluator actors share the GPU.

Each section stands alone: one that fails is recorded with its error and the next one runs, and the
JSON is written after every section, so a kit cut short by a time limit keeps what it measured.
"""

from __future__ import annotations

import datetime
import gc
import platform
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel

from prunesched.bench.atedm import AtedmBenchConfig, run_atedm_bench
from prunesched.bench.cat import CatBenchConfig, run_cat_bench
from prunesched.bench.step import StepBenchConfig, run_step_bench
from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import Progress, launch
from prunesched.timing import device_name, pick_device

Log = Callable[[str], None]

TIME_GOAL_S = 480.0
"""The kit's whole run on one GPU, in seconds (the issue's 8 minutes)."""

PACKAGES = ("prunesched", "torch", "diffusers", "transformers", "ray", "pymoo", "tomesd", "DeepCache")
"""Versions the result records."""


@dataclass(frozen=True)
class Section:
    """One part of the kit: ``run(log)`` returns its JSON-ready result, with a ``goals`` table when it has goals."""

    name: str
    run: Callable[[Log], dict[str, Any]]


def step_section(config: StepBenchConfig, unet: UNet2DConditionModel | None = None) -> Section:
    """``bench step`` with ``config`` (``unet`` replaces the SD 1.5 UNet, as in :func:`run_step_bench`)."""
    return Section("step", lambda log: run_step_bench(config, log, unet))


def atedm_section(config: AtedmBenchConfig) -> Section:
    """``bench atedm`` with ``config``."""
    return Section("atedm", lambda log: run_atedm_bench(config, log))


def cat_section(config: CatBenchConfig) -> Section:
    """``bench cat`` with ``config``."""
    return Section("cat", lambda log: run_cat_bench(config, log))


def search_section(config: SearchConfig, db: Path) -> Section:
    """A search launched with ``config`` in the database ``db`` (kept, for ``prunesched history`` and the report),
    summarised by :func:`summarise_search`."""

    def run(log: Log) -> dict[str, Any]:
        start = time.monotonic()
        search_id = launch(config, db, progress=lambda p: _log_generation(p, log))
        return {"wall_s": time.monotonic() - start, "db": str(db), "search_id": search_id, **summarise_search(db, search_id)}

    return Section("search", run)


def _log_generation(progress: Progress, log: Log) -> None:
    if progress.generation_stored:
        log(f"search: generation {progress.generation} of {progress.generations} stored, {progress.done} evaluations")


def summarise_search(db: Path, search_id: int) -> dict[str, Any]:
    """What a search's evaluations ran on, its validated front, how its cost model agreed with measured latency there,
    and which baselines the front dominates; the goal is every evaluation on a GPU."""
    from prunesched.search import review
    from prunesched.storage.store import Store

    store = Store(db)
    rows = store.evaluations(search_id)
    devices = Counter(str(e.device).split(",")[0] for _c, e in rows)
    validated = review.validated_front(store, search_id)
    agreement = review.latency_agreement(validated)
    comparisons = review.baselines(store, search_id)
    on_gpu = sum(n for device, n in devices.items() if device.startswith("cuda")) / max(1, len(rows))
    return {
        "evaluations": len(rows),
        "done": store.counts(search_id).done,
        "devices": dict(devices),
        "validated_front": [{"candidate": p.candidate.id, "baseline": p.candidate.baseline, "objectives": p.objectives} for p in validated],
        "latency_agreement": None if agreement is None else dict(zip(("spearman", "measured_over_predicted", "points"), agreement)),
        "baselines_dominated": sorted(c.name for c in comparisons if c.dominated),
        "baselines": len(comparisons),
        "goals": {"evaluations_on_gpu": {"value": on_gpu, "goal": "= 1 (every evaluation ran on a CUDA device)", "met": on_gpu == 1}},
    }


def gpu_search() -> SearchConfig:
    """The embedded default search cut to 2 generations, its two evaluator actors holding half the GPU each."""
    data = SearchConfig.default().to_dict()
    data["name"] = "gpu-kit"
    data["proposer"]["generations"] = 2
    data["dispatch"].update(workers=2, gpus_per_worker=0.5)
    return SearchConfig.from_dict(data)


GPU_STEP = StepBenchConfig(latent=64, e2e_latent=64, device="cuda")
"""SD 1.5 at 512x512 (latent 64), its DaTo Table 6 run at 512x512 too."""
GPU_ATEDM = AtedmBenchConfig(latency_latent=128, profile=True)
"""SDXL timed at 1024x1024 (latent 128), with the operators of a full and an AT-EDM step (2.66x a full one on an H100)."""
GPU_CAT = CatBenchConfig(latency_latent=128, profile=True)
"""SD3-medium timed at 1024x1024 (latent 128), with the operators of a full and a CAT step (1.09x a full one on an H100)."""


def gpu_kit(db: Path) -> list[Section]:
    """The kit as the issue names it: fp16 on the GPU at the papers' resolutions, then the GPU search, stored in ``db``."""
    return [step_section(GPU_STEP), atedm_section(GPU_ATEDM), cat_section(GPU_CAT), search_section(gpu_search(), db)]


def run_kit(sections: Sequence[Section], write: Callable[[dict[str, Any]], None], log: Log = print) -> dict[str, Any]:
    """Run ``sections`` in turn, each on its own, and return the result; ``write(result)`` runs after every section.

    A section that raises is recorded as ``{"error": ..., "wall_s": ...}``. The result's goals are every
    section's, prefixed with its name, and the kit's wall time against :data:`TIME_GOAL_S`.
    """
    result: dict[str, Any] = {"benchmark": "prunesched bench gpu", "meta": _meta(), "sections": {}, "goals": {}}
    start = time.monotonic()
    for section in sections:
        log(f"== {section.name}")
        began = time.monotonic()
        try:
            entry = section.run(log)
        except Exception as exc:  # a section's failure is its result; the kit goes on with the next
            entry = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"{section.name} failed: {entry['error']}")
        entry["wall_s"] = time.monotonic() - began
        result["sections"][section.name] = entry
        result["goals"].update({f"{section.name}.{name}": goal for name, goal in entry.get("goals", {}).items()})
        wall = time.monotonic() - start
        result["wall_s"] = wall
        result["goals"]["kit_wall_s"] = {"value": wall, "goal": f"<= {TIME_GOAL_S:.0f}", "met": wall <= TIME_GOAL_S}
        write(result)
        gc.collect()  # the section's models go before the next one's are built
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return result


def _meta() -> dict[str, Any]:
    device = pick_device()
    return {
        "device": device_name(device),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "versions": {name: _version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:  # the section that needs it records the error
        return None
