"""Prompt sets: the fixed prompts every candidate of a search is generated from.

A prompt set is data: ImageNet-1k class prompts (the DaTo/SiTo protocol, "a photo of a ..."
for each class, twice), held-out captions of the embedded shapes model, captions from an official
COCO annotation file, PartiPrompts' TSV, or a plain text file with one prompt per line. Subsampling is deterministic by seed, and the set's
hash names exactly these prompts in this order, so anything computed from them (reference
statistics) can be cached under it.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from prunesched.checks import MAX_SEED, check_keys, check_number
from prunesched.errors import ConfigError
from prunesched.files import MAX_PROMPT_FILE_BYTES, read_text

KINDS = ("imagenet", "shapes", "coco", "parti", "text")
SHAPES_CAPTIONS = 1000
"""Size of the shapes prompt set: the first this many held-out captions."""
MAX_PER_CLASS = 100
"""ImageNet prompts per class at most (DaTo and SiTo use 2)."""
MAX_COUNT = 100_000
"""Prompts a set may be subsampled to at most: as many as the most images an evaluation takes."""

PromptSpec: TypeAlias = Sequence[str] | Mapping[str, str | int]
"""Prompts as a config gives them: a list of prompts, or a prompt-set table (see :func:`prompt_set`)."""


@dataclass(frozen=True)
class PromptSet:
    """Prompts in generation order; image i uses ``prompts[i]`` and seed ``seed + i``."""

    prompts: tuple[str, ...]
    source: str

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.prompts).encode()).hexdigest()

    def subsample(self, count: int, seed: int) -> PromptSet:
        """``count`` prompts drawn without replacement by ``seed``, kept in their original order."""
        if count > len(self.prompts):
            raise ConfigError(f"asked for {count} prompts but {self.source} has {len(self.prompts)}; ask for at most that many")
        if count == len(self.prompts):
            return self
        chosen = np.sort(np.random.default_rng(seed).choice(len(self.prompts), size=count, replace=False))
        return PromptSet(tuple(self.prompts[i] for i in chosen), f"{self.source}, {count} drawn with seed {seed}")


def imagenet_prompts(per_class: int = 2, template: str = "a photo of a {}") -> PromptSet:
    """The ImageNet-1k class prompts, ``per_class`` times each (DaTo/SiTo: 2 per class, 2000 images).

    Class names are torchvision's (the ones its ImageNet weights report), so nothing is downloaded.
    """
    from torchvision.models import ResNet50_Weights

    names = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    prompts = tuple(template.format(name) for name in names for _ in range(per_class))
    return PromptSet(prompts, f"ImageNet-1k class prompts ({per_class} per class)")


def shapes_captions() -> PromptSet:
    """Captions the embedded shapes model never saw in training (its held-out split), in index order."""
    from prunesched.models.shapes.data import scene

    return PromptSet(tuple(scene(i, "heldout")[0].caption for i in range(SHAPES_CAPTIONS)), "held-out shapes captions")


def coco_captions(path: str | Path) -> PromptSet:
    """One caption per image from an official COCO captions annotation file (``captions_val2014.json``, ...).

    Images in id order, each with its caption of the lowest annotation id, so the set is the
    same on every machine.
    """
    data = _read_json(path, "a COCO captions annotation file")
    annotations = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(annotations, list) or not annotations:
        raise ConfigError(f"{str(path)!r} has no 'annotations' list; expected a COCO captions file like captions_val2014.json")
    first: dict[Any, tuple[Any, str]] = {}
    for i, item in enumerate(annotations):
        if not isinstance(item, dict) or not isinstance(item.get("caption"), str) or "image_id" not in item:
            raise ConfigError(f"annotation {i} of {str(path)!r} needs 'image_id' and a 'caption' string, got {item!r:.80}")
        key = item.get("id", i)
        if item["image_id"] not in first or key < first[item["image_id"]][0]:
            first[item["image_id"]] = (key, item["caption"].strip())
    return PromptSet(tuple(first[image][1] for image in sorted(first)), f"COCO captions from {Path(path).name}")


def parti_prompts(path: str | Path) -> PromptSet:
    """The ``Prompt`` column of PartiPrompts' ``PartiPrompts.tsv``, in file order."""
    rows = list(csv.DictReader(read_text(path, "a PartiPrompts TSV file", ConfigError, MAX_PROMPT_FILE_BYTES).splitlines(), delimiter="\t"))
    if not rows or "Prompt" not in rows[0]:
        raise ConfigError(f"{str(path)!r} has no 'Prompt' column; expected PartiPrompts.tsv (columns Prompt, Category, Challenge, Note)")
    return _nonempty([row["Prompt"] or "" for row in rows], path, "PartiPrompts")


def text_prompts(path: str | Path) -> PromptSet:
    """One prompt per line of a UTF-8 text file; blank lines are skipped."""
    return _nonempty(read_text(path, "a text file of prompts", ConfigError, MAX_PROMPT_FILE_BYTES).splitlines(), path, "prompts")


def prompt_set(spec: PromptSpec) -> PromptSet:
    """The prompt set a config names: a list of prompts, or a table ``{kind, path, per_class, count, seed}``.

    ``count`` (optional) subsamples the set deterministically with ``seed`` (default 0).
    """
    if isinstance(spec, (list, tuple)):
        if not spec or not all(isinstance(p, str) and p.strip() for p in spec):
            raise ConfigError(f"prompts must be a non-empty list of non-empty strings or a table with 'kind'; got {spec!r:.80}")
        return PromptSet(tuple(spec), f"{len(spec)} prompts from the config")
    if not isinstance(spec, Mapping):
        raise ConfigError(f"prompts must be a list of strings or a table like {{kind = 'text', path = 'prompts.txt'}}, got {spec!r:.80}")
    table: dict[str, Any] = dict(spec)
    kind = table.pop("kind", None)
    if kind not in KINDS:
        raise ConfigError(f"prompts kind {kind!r} is not known; valid: {', '.join(KINDS)}")
    keys = {"imagenet": ["per_class"], "shapes": []}.get(kind, ["path"])
    check_keys(table, [*keys, "count", "seed"], f"prompts of kind {kind!r}")
    count, seed = table.pop("count", None), table.pop("seed", 0)
    check_number(seed, "seed", "prompts", integer=True, high=MAX_SEED)
    if kind == "imagenet":
        per_class = table.get("per_class", 2)
        check_number(per_class, "per_class", "prompts", integer=True, low=1, high=MAX_PER_CLASS)
        prompts = imagenet_prompts(per_class)
    elif kind == "shapes":
        prompts = shapes_captions()
    else:
        if not isinstance(table.get("path"), str):
            raise ConfigError(f"prompts of kind {kind!r} need a 'path' to the file")
        prompts = {"coco": coco_captions, "parti": parti_prompts, "text": text_prompts}[kind](table["path"])
    if count is None:
        return prompts
    check_number(count, "count", "prompts", integer=True, low=1, high=MAX_COUNT)
    return prompts.subsample(count, seed)


def _read_json(path: str | Path, what: str) -> Any:
    try:
        return json.loads(read_text(path, what, ConfigError, MAX_PROMPT_FILE_BYTES))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{str(path)!r} is not valid JSON ({exc.msg} at line {exc.lineno}); expected {what}") from None


def _nonempty(lines: Sequence[str], path: str | Path, what: str) -> PromptSet:
    prompts = tuple(line.strip() for line in lines if line.strip())
    if not prompts:
        raise ConfigError(f"{str(path)!r} holds no prompts; expected one prompt per line")
    return PromptSet(prompts, f"{what} from {Path(path).name}")
