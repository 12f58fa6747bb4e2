"""The embedded default model: a tiny text-to-image model of coloured shapes, trained by the project and shipped.

``data`` makes its captioned training images, ``architecture`` its components, ``judge`` the
classifier that scores its images; the weights in ``weights/`` are written by
``experiments/train_shapes.py``.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from prunesched.errors import ConfigError

NAME = "shapes"
"""The name that selects this model wherever a model is named (configs, the CLI)."""
WEIGHTS = Path(__file__).parent / "weights"
MODEL_DIR = WEIGHTS / "pipeline"
"""A diffusers folder: ``StableDiffusionPipeline.from_pretrained(MODEL_DIR)`` loads it offline."""
JUDGE_FILE = WEIGHTS / "judge.safetensors"
DIT_NAME = "shapes-dit"
"""The name of the shapes DiT: SD3's architecture trained on the same data (``experiments/train_shapes_dit.py``)."""
DIT_DIR = WEIGHTS / "dit"
"""A diffusers folder: ``StableDiffusion3Pipeline.from_pretrained(DIT_DIR)`` loads it offline."""

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline


def pipeline() -> StableDiffusionPipeline:
    """The shipped model as a ``StableDiffusionPipeline``, loaded from the package without any download."""
    from diffusers import StableDiffusionPipeline

    if not (MODEL_DIR / "model_index.json").is_file():
        raise ConfigError(f"the shipped shapes model is missing from {MODEL_DIR}; reinstall prunesched or run experiments/train_shapes.py")
    pipe = StableDiffusionPipeline.from_pretrained(MODEL_DIR, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.cache
def fingerprint() -> str:
    """A hash of the shipped weights' contents, so caches keyed by it notice a retrained model."""
    digest = hashlib.sha256()
    for path in sorted(WEIGHTS.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(WEIGHTS)).encode() + path.read_bytes())
    return f"{NAME}@{digest.hexdigest()[:16]}"
