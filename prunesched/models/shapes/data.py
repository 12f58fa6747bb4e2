"""Procedural captioned images of coloured shapes: the training data of the embedded model and its judge.

Every image is a pure function of its index (and the split), so the data set needs no files and
any worker can regenerate any image. One or two shapes sit on a gradient or textured background,
so there is both a caption to follow and fine detail for caching and pruning to lose. The main
object (the first one the caption names) is always the larger, which lets the judge read it off
the image alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 170, 60),
    "blue": (45, 75, 215),
    "yellow": (240, 215, 40),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
}
TEXTURES = ("gradient", "striped", "checkered", "dotted")
RELATIONS = {"above": (0, -1), "below": (0, 1), "left of": (-1, 0), "right of": (1, 0)}
"""Per relation word, the direction (x, y; y points down) in which the main object lies from the second."""
SIZES = {"small": 0.34, "large": 0.5}
"""Main-object size as a fraction of the image side; a second object is always smaller than the main one."""

SECOND_OBJECT = 0.35
"""The share of scenes with a second object."""

Split = Literal["train", "heldout"]
HELDOUT_EVERY = 8
"""One caption in this many (by a hash of its words) is held out of training."""


@dataclass(frozen=True)
class Scene:
    """What an image shows; its caption is a function of it."""

    shape: str
    colour: str
    size: str
    background: str
    texture: str
    second: tuple[str, str, str] | None = None
    """(shape, colour, relation) of a smaller second object, placed relative to the main one."""

    @property
    def caption(self) -> str:
        text = f"a {self.size} {self.colour} {self.shape}"
        if self.second is not None:
            shape, colour, relation = self.second
            text += f" {relation} a {colour} {shape}"
        return f"{text} on a {self.texture} {self.background} background"

    @property
    def split(self) -> Split:
        digest = hashlib.sha256(self.caption.encode()).digest()
        return "heldout" if digest[0] % HELDOUT_EVERY == 0 else "train"


def main_object(caption: str) -> tuple[str, str] | None:
    """The (shape, colour) of the object a shapes caption names first, or None for any other text."""
    words = caption.split()
    if len(words) >= 4 and words[0] == "a" and words[1] in SIZES and words[2] in COLOURS and words[3] in SHAPES:
        return words[3], words[2]
    return None


def vocabulary() -> list[str]:
    """Every word a caption can use, for the tokenizer."""
    words = ["a", "on", "background", "of", *SHAPES, *COLOURS, *TEXTURES, *SIZES]
    words += [w for relation in RELATIONS for w in relation.split()]
    return list(dict.fromkeys(words))


def random_scene(rng: np.random.Generator) -> Scene:
    """A scene drawn uniformly: one or two objects, three colours all different."""
    colours = list(COLOURS)
    main, other, background = rng.choice(len(colours), 3, replace=False)
    second = None
    if rng.random() < SECOND_OBJECT:
        second = (SHAPES[rng.integers(len(SHAPES))], colours[other], list(RELATIONS)[rng.integers(len(RELATIONS))])
    return Scene(
        shape=SHAPES[rng.integers(len(SHAPES))],
        colour=colours[main],
        size=list(SIZES)[rng.integers(len(SIZES))],
        background=colours[background],
        texture=TEXTURES[rng.integers(len(TEXTURES))],
        second=second,
    )


def scene(index: int, split: Split = "train", seed: int = 0) -> tuple[Scene, np.random.Generator]:
    """The ``index``-th scene of ``split`` and the generator that places it: draws until a scene of that split comes up."""
    rng = np.random.default_rng([seed, index, 0 if split == "train" else 1])
    while True:
        candidate = random_scene(rng)
        if candidate.split == split:
            return candidate, rng


def sample(index: int, split: Split = "train", size: int = 64, seed: int = 0) -> tuple[Image.Image, Scene]:
    """The ``index``-th image of ``split`` and its scene."""
    described, rng = scene(index, split, seed)
    return render(described, rng, size), described


def save_samples(folder: str | Path, count: int, split: Split = "heldout", size: int = 64, seed: int = 0) -> Path:
    """Write the first ``count`` images of ``split`` as PNG files: a real-image reference folder for FID."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / f"{i:05d}.png"  # the names save_images uses
        if not path.exists():
            sample(i, split, size, seed)[0].save(path)
    return folder


def render(described: Scene, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """Draw ``described`` at ``size`` pixels; positions, jitter and texture phase come from ``rng``."""
    scale = 4  # draw large and downsample, for anti-aliased edges
    side = size * scale
    canvas = Image.fromarray(_background(described.background, described.texture, side, rng))
    draw = ImageDraw.Draw(canvas)
    main_side = SIZES[described.size] * side * rng.uniform(0.9, 1.1)
    if described.second is None:
        margin = main_side / 2 + 0.06 * side
        centre = rng.uniform(margin, side - margin, 2)
        _shape(draw, described.shape, centre, main_side, COLOURS[described.colour])
    else:
        shape, colour, relation = described.second
        second_side = main_side * 0.6
        dx, dy = RELATIONS[relation]
        gap = (main_side + second_side) / 2 + 0.05 * side
        pair = -np.array([dx, dy]) * gap  # the main object lies `relation` the second, so the second lies opposite
        low = np.maximum(main_side / 2, second_side / 2 - pair) + 0.03 * side
        high = np.minimum(side - main_side / 2, side - second_side / 2 - pair) - 0.03 * side
        centre = rng.uniform(low, np.maximum(low, high))
        _shape(draw, described.shape, centre, main_side, COLOURS[described.colour])
        _shape(draw, shape, centre + pair, second_side, COLOURS[colour])
    return canvas.resize((size, size), Image.Resampling.BOX)


def _shape(draw: ImageDraw.ImageDraw, shape: str, centre: np.ndarray, side: float, colour: tuple[int, int, int]) -> None:
    x, y = centre
    r = side / 2
    if shape == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    elif shape == "square":
        draw.rectangle((x - r, y - r, x + r, y + r), fill=colour)
    else:
        draw.polygon([(x, y - r), (x + r, y + r), (x - r, y + r)], fill=colour)


def _background(name: str, texture: str, side: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB array: the named colour, modulated by the texture so it stays recognisably that colour."""
    base = np.array(COLOURS[name], dtype=np.float32)
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32) / side
    if texture == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * xs + np.sin(angle) * ys
        light = 0.7 + 0.3 * (ramp - ramp.min()) / (ramp.max() - ramp.min())
    elif texture == "striped":
        period = rng.uniform(0.08, 0.14)
        light = np.where(((xs + ys + rng.uniform(0, 1)) / period) % 1.0 < 0.5, 1.0, 0.72)
    elif texture == "checkered":
        period = rng.uniform(0.1, 0.16)
        light = np.where(((xs // period) + (ys // period)) % 2 == 0, 1.0, 0.75)
    else:
        period = rng.uniform(0.1, 0.15)
        cx, cy = (xs / period) % 1.0 - 0.5, (ys / period) % 1.0 - 0.5
        light = np.where(cx**2 + cy**2 < 0.06, 0.72, 1.0)
    shade = base[None, None, :] * light[..., None]
    if name in ("black",):  # darkening black loses the texture; lighten it instead
        shade = base[None, None, :] + (1 - light[..., None]) * 160
    return np.clip(shade, 0, 255).astype(np.uint8)
