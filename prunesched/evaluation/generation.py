"""Images for evaluation: fixed prompts and per-image seeds, batched, and the denoising loop timed on its own.

Every candidate of a search is generated from the same prompts and seeds (common random numbers),
so differences between candidates are differences between schedules, not between noise draws.
Images stay on the machine that made them (saved as PNG under a cache folder); only metrics travel.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import statistics
import tempfile
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import prunesched
from prunesched.errors import ConfigError
from prunesched.evaluation.settings import LATENCY_SCOPES, GenerationSpec
from prunesched.models.loading import model_fingerprint
from prunesched.runtime.patch import find_denoiser
from prunesched.runtime.schedule import Schedule
from prunesched.timing import Sample, Stopwatch


class ImageGenerator:
    """Generates a spec's images with or without a schedule, and times its loop, on one pipeline."""

    def __init__(self, pipe: Any, spec: GenerationSpec) -> None:
        self.pipe, self.spec = pipe, spec
        self.denoiser = find_denoiser(pipe)
        self.device = pipe.device
        self.stopwatch = Stopwatch(self.device)
        pipe.scheduler.set_timesteps(spec.num_inference_steps)
        self.loop_length = len(pipe.scheduler.timesteps)
        self.size = (getattr(self.denoiser.config, "sample_size", None) or pipe.default_sample_size) * pipe.vae_scale_factor  # Flux: none
        self._timed_batch = self._embed(self._batches()[0][0])
        self._warm: set[tuple[str, bool]] = set()  # (schedule hash, "" unaccelerated; decoded) run on a first batch here

    @property
    def identity(self) -> dict[str, Any]:
        """Everything that makes two runs give the same images: the spec, the image size, and where it runs."""
        spec = asdict(self.spec)
        spec["model"] = model_fingerprint(self.spec.model)
        spec["prompts"] = hashlib.sha256(json.dumps(spec["prompts"]).encode()).hexdigest()
        spec["batch_size"] = self.batch_size
        device = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
        versions = {name: version(name) for name in ("torch", "diffusers", "prunesched")}
        return {**spec, "size": self.size, "device": device, "dtype": str(self.denoiser.dtype), **versions}

    @property
    def batch_size(self) -> int:
        """Images per pipeline call as run (the setting, or fewer when there are fewer images)."""
        return len(self._batches()[0][0])

    @property
    def attention(self) -> str:
        """The attention processor(s) the denoiser runs, recorded with every latency."""
        return ",".join(sorted({type(p).__name__ for p in self.denoiser.attn_processors.values()}))

    def images(self, schedule: Schedule | None = None, count: int | None = None) -> torch.Tensor:
        """The first ``count`` images (None: all) as uint8 (N, 3, H, W) on the CPU, with ``schedule`` applied (None: unaccelerated)."""
        out = []
        with self._applied(schedule):
            for prompts, seeds in self._batches(count):
                latents = self._loop(self._embed(prompts), seeds)
                out.append(self._decode(latents))
        if len(out[0]) == self.batch_size:  # the first batch as timed: nothing about it runs for the first time again
            self._warm |= {(_key(schedule), False), (_key(schedule), True)}
        return torch.cat(out)

    def latency(self, schedule: Schedule | None, repeats: int, scope: str = "loop") -> tuple[list[Sample], list[Sample]]:
        """Times of the first batch with ``schedule`` and unaccelerated, alternating, after one warm-up of each side
        that has not run that batch in this process yet.

        Neighbouring runs are paired so that a relative latency cancels the machine's drift.
        """
        if scope not in LATENCY_SCOPES:
            raise ConfigError(f"unknown latency scope {scope!r}; valid: {', '.join(LATENCY_SCOPES)}")
        timed: dict[bool, list[Sample]] = {True: [], False: []}
        for repeat in range(repeats + 1):
            for accelerated in (True, False) if repeat % 2 else (False, True):  # neither side always goes first
                if not repeat and (_key(schedule if accelerated else None), scope == "pipeline") in self._warm:
                    continue
                samples: list[Sample] = []
                with self.stopwatch.region(samples):
                    self.first_batch(schedule if accelerated else None, decode=scope == "pipeline")
                if repeat:
                    timed[accelerated] += samples
        return timed[True], timed[False]

    def first_batch(self, schedule: Schedule | None, decode: bool = False, **call: Any) -> None:
        """Run the first batch once, the unit every latency is measured on: from precomputed text embeddings to
        latents, or (``decode``) from prompts to decoded images. ``call`` goes to the pipeline (e.g. a step callback).
        """
        prompts, seeds = self._batches()[0]
        with self._applied(schedule):
            if decode:
                self._decode(self._loop({"prompt": list(prompts), **call}, seeds))
            else:
                self._loop({**self._timed_batch, **call}, seeds)
        self._warm.add((_key(schedule), decode))

    def _batches(self, count: int | None = None) -> list[tuple[Sequence[str], Sequence[int]]]:
        size, spec = self.spec.batch_size, self.spec
        total = len(spec.prompts) if count is None else min(count, len(spec.prompts))
        return [(spec.prompts[i : min(i + size, total)], spec.seeds[i : min(i + size, total)]) for i in range(0, total, size)]

    def _applied(self, schedule: Schedule | None) -> Any:
        return nullcontext() if schedule is None else prunesched.apply(self.pipe, schedule)

    def _embed(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Text embeddings as pipeline keyword arguments (SD returns two tensors, SDXL and SD3 four, PixArt four with masks,
        Flux two and its text ids, which its pipeline makes again)."""
        names: tuple[str, ...] = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
        if "prompt_attention_mask" in _parameters(self.pipe):
            names = ("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds", "negative_prompt_attention_mask")
        parameters = inspect.signature(self.pipe.encode_prompt).parameters
        others: dict[str, Any] = {k: None for k in ("prompt_2", "prompt_3") if k in parameters}  # SD3, Flux: the same prompt
        if "do_classifier_free_guidance" in parameters:
            others["do_classifier_free_guidance"] = self.spec.guidance_scale > 1
        else:  # Flux: guidance is distilled into the model, one call per step and no negative prompt
            names = ("prompt_embeds", "pooled_prompt_embeds")
        with torch.no_grad():
            out = self.pipe.encode_prompt(prompt=list(prompts), **others, device=self.device, num_images_per_prompt=1)
        embeddings = {name: value for name, value in zip(names, out) if value is not None}
        if "negative_prompt_embeds" in embeddings:  # PixArt's negative_prompt defaults to "", which would conflict
            embeddings["negative_prompt"] = None
        return embeddings

    def _loop(self, inputs: dict[str, Any], seeds: Sequence[int]) -> torch.Tensor:
        generators = [torch.Generator(self.device).manual_seed(seed) for seed in seeds]
        # PixArt: the model's own size needs no aspect-ratio binning, and captions go in as given
        options = {k: False for k in ("use_resolution_binning", "clean_caption") if k in _parameters(self.pipe)}
        with torch.no_grad():
            return self.pipe(
                **inputs,
                **options,
                generator=generators,
                height=self.size,
                width=self.size,
                output_type="latent",
                num_inference_steps=self.spec.num_inference_steps,
                guidance_scale=self.spec.guidance_scale,
            ).images

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        if latents.ndim == 3:  # Flux returns its latents packed as 2x2 patch tokens
            latents = self.pipe._unpack_latents(latents, self.size, self.size, self.pipe.vae_scale_factor)
        shift = getattr(vae.config, "shift_factor", None) or 0.0  # SD3's VAE is shifted
        with torch.no_grad():
            decoded = vae.decode(latents / vae.config.scaling_factor + shift).sample
        pixels = (decoded.float().cpu() / 2 + 0.5).clamp(0, 1)
        return (pixels * 255).round().to(torch.uint8)  # as diffusers' own PIL conversion rounds


def step_callback(pipe: Any, after: Callable[[int], None]) -> dict[str, Any]:
    """Pipeline keyword arguments that call ``after(i)`` at the end of loop iteration ``i``: ``callback_on_step_end``,
    or the older ``callback`` where a pipeline has only that (PixArt)."""
    if "callback_on_step_end" in _parameters(pipe):

        def on_step_end(_pipe: Any, i: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            after(i)
            return tensors  # the pipeline reads back the tensors the callback returns

        return {"callback_on_step_end": on_step_end}
    return {"callback": lambda i, _t, _latents: after(i), "callback_steps": 1}


def _parameters(pipe: Any) -> Any:
    return inspect.signature(pipe.__call__).parameters


def median_ratio(numerators: Sequence[Sample], denominators: Sequence[Sample]) -> float:
    """The median of pairwise wall-time ratios: a speed comparison that survives the machine's drift."""
    return statistics.median(a.wall / b.wall for a, b in zip(numerators, denominators))


def tile(images: torch.Tensor, columns: int, scale: int = 1) -> Image.Image:
    """uint8 (N, 3, H, W) images in rows of ``columns`` on white, each upscaled ``scale`` times without smoothing."""
    side = images.shape[-1] * scale
    grid = Image.new("RGB", (columns * side, -(-len(images) // columns) * side), "white")
    for i, image in enumerate(images):
        picture = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((side, side), Image.Resampling.NEAREST)
        grid.paste(picture, ((i % columns) * side, (i // columns) * side))
    return grid


def save_images(images: torch.Tensor, folder: Path) -> None:
    """Write uint8 (N, 3, H, W) images as lossless PNGs ``00000.png``... (what torch-fidelity reads back bit-exactly).

    The folder appears whole or not at all: a crash or a second worker never leaves a half-written set behind.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    for i, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(partial / f"{i:05d}.png")
    if folder.exists():
        shutil.rmtree(folder)
    try:
        partial.rename(folder)
    except OSError:  # another worker put the same images there first
        shutil.rmtree(partial)


def load_images(folder: Path, count: int) -> torch.Tensor | None:
    """The images :func:`save_images` wrote, or None unless all ``count`` are there."""
    paths = [folder / f"{i:05d}.png" for i in range(count)]
    if not all(p.is_file() for p in paths):
        return None
    return torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in paths])


def key_hash(key: dict[str, Any]) -> str:
    """A short stable name for a cache entry keyed by ``key``."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def _key(schedule: Schedule | None) -> str:
    """What the generator's warm set knows a run by: the schedule's hash, or "" for the unaccelerated pipeline."""
    return "" if schedule is None else schedule.hash
