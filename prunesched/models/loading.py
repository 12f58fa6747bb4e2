"""One way to name a pipeline everywhere (configs, the CLI, workers): a built-in name, a local folder, or a cached hub id."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prunesched.errors import ConfigError
from prunesched.models import shapes
from prunesched.models.tiny import TINY_PIPELINES

BUILTINS = {shapes.NAME: shapes.pipeline, shapes.DIT_NAME: shapes.dit_pipeline, **TINY_PIPELINES}
"""Models named without a path: the shipped shapes models (UNet and DiT), and the random-weight test pipelines."""


def check_model(model: str) -> None:
    """Refuse a model name that :func:`load_pipeline` cannot load on this machine, before any work starts."""
    from huggingface_hub import try_to_load_from_cache

    if model in BUILTINS or (Path(model) / "model_index.json").is_file():
        return
    cached = "/" in model and not Path(model).exists() and isinstance(try_to_load_from_cache(model, "model_index.json"), str)
    if not cached:
        raise ConfigError(
            f"unknown model {model!r}: not a built-in ({', '.join(BUILTINS)}), a diffusers folder, "
            "or a hub id in the local Hugging Face cache (nothing is downloaded)"
        )


def load_pipeline(model: str) -> Any:
    """The pipeline ``model`` names; never downloads (clusters are often offline, and a search must not stall on it)."""
    check_model(model)
    with _quiet_loading():
        if model in BUILTINS:
            return BUILTINS[model]()
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(model, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_defaults(model: str) -> tuple[int, float]:
    """The default ``num_inference_steps`` and ``guidance_scale`` of the model's pipeline (50 and 7.5 for SD, 28 and 7 for SD3)."""
    parameters = inspect.signature(type(load_pipeline(model)).__call__).parameters
    return parameters["num_inference_steps"].default, parameters["guidance_scale"].default


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Without diffusers' and transformers' loading bars and advice (such as installing accelerate), which would
    fill every worker's log; restored after."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    libraries = (diffusers_logging, transformers_logging)
    shown = [lib for lib in libraries if lib.is_progress_bar_enabled()]
    levels = [lib.get_verbosity() for lib in libraries]
    for lib in libraries:
        lib.disable_progress_bar()
        lib.set_verbosity_error()
    try:
        yield
    finally:
        for lib in shown:
            lib.enable_progress_bar()
        for lib, level in zip(libraries, levels):
            lib.set_verbosity(level)


def model_fingerprint(model: str) -> str:
    """A string that changes whenever the weights ``model`` names may have changed.

    A shipped model's weight contents, a folder's files, or (for random-weight test pipelines
    and cached hub ids) the name.
    """
    if model in shapes.MODELS:
        return shapes.fingerprint(model)
    return folder_fingerprint(Path(model)) if model not in BUILTINS and Path(model).is_dir() else model


def folder_fingerprint(folder: Path) -> str:
    """The folder's absolute path and a hash of every file's name, size and modification time under it."""
    root = folder.resolve()
    listing = sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file())
    return f"{root}@{hashlib.sha256(repr(listing).encode()).hexdigest()[:16]}"
