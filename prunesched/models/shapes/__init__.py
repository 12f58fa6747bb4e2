"""The embedded models: tiny text-to-image models of coloured shapes, trained by the project and shipped.

The UNet (``shapes``, the default model) and the DiT (``shapes-dit``, SD3's architecture) draw the
same captions. ``data`` makes the captioned training images, ``architecture`` the components,
``judge`` the classifier that scores either model's images; the weights in ``weights/`` are
written by ``experiments/train_shapes.py`` (``pipeline/``, the judge) and
``experiments/train_shapes_dit.py`` (``dit/``).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
"""A diffusers folder: ``StableDiffusion3Pipeline.from_pretrained(DIT_DIR, text_encoder_3=None, tokenizer_3=None)`` loads it offline."""

MODELS = (NAME, DIT_NAME)
"""The shipped models: both draw the same captions, so the judge scores either."""

if TYPE_CHECKING:
    from diffusers import StableDiffusion3Pipeline, StableDiffusionPipeline


def pipeline() -> StableDiffusionPipeline:
    """The shipped UNet model as a ``StableDiffusionPipeline``, loaded from the package without any download."""
    from diffusers import StableDiffusionPipeline

    return _load(StableDiffusionPipeline, MODEL_DIR, "experiments/train_shapes.py")


def dit_pipeline() -> StableDiffusion3Pipeline:
    """The shipped DiT model as a ``StableDiffusion3Pipeline``, loaded from the package without any download.

    It has no T5, so diffusers wants ``text_encoder_3=None, tokenizer_3=None`` said explicitly, as for SD3 without T5.
    """
    from diffusers import StableDiffusion3Pipeline

    return _load(StableDiffusion3Pipeline, DIT_DIR, "experiments/train_shapes_dit.py", text_encoder_3=None, tokenizer_3=None)


def _load(cls: Any, folder: Path, script: str, **components: None) -> Any:
    """``cls.from_pretrained`` of a shipped folder, offline, without progress bars; a clear error if it was not installed."""
    if not (folder / "model_index.json").is_file():
        raise ConfigError(f"the shipped shapes model is missing from {folder}; reinstall prunesched or run {script}")
    pipe = cls.from_pretrained(folder, local_files_only=True, **components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.cache
def fingerprint(model: str = NAME) -> str:
    """A hash of one shipped model's weights and the judge, so caches keyed by it notice a retrained model."""
    folder = {NAME: MODEL_DIR, DIT_NAME: DIT_DIR}[model]
    digest = hashlib.sha256()
    for path in sorted([*folder.rglob("*"), JUDGE_FILE]):
        if path.is_file():
            digest.update(str(path.relative_to(WEIGHTS)).encode() + path.read_bytes())
    return f"{model}@{digest.hexdigest()[:16]}"
