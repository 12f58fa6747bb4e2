"""A calibration: how much the full model's blocks and output change from one loop iteration to the next, as JSON.

``prunesched calibrate MODEL`` (:func:`prunesched.calibration.recording.record`) records it; the threshold
rules (:mod:`prunesched.calibration.thresholds`) turn it into the schedules FirstBlockCache, TeaCache and
MagCache would run. The document is data, never a pickle, and carries the model's fingerprint and the loop it was
recorded on, so a search refuses one made on other weights or another loop length (:meth:`Calibration.check`)::

    {"format": "prunesched.calibration", "version": 1,
     "model": "shapes", "fingerprint": "shapes@3f1c...", "architecture": "unet",
     "scheduler": "PNDMScheduler", "num_inference_steps": 20, "loop_length": 21, "guidance_scale": 7.5, "seed": 0,
     "prompts": ["a small red circle ...", ...], "timesteps": [951.0, 901.0, ...],
     "blocks": ["down_blocks.0", ...], "branches": ["up_blocks.2.resnets.0", ...],
     "signals": {"first_block": [[null, 0.31, ...], ...], "output": ..., "magnitude_ratio": ..., "blocks": ...}}

Every signal is kept per prompt (its first index; image i of the recording is prompt i with seed ``seed + i``) and
per loop iteration (its second), so the spread over prompts stays visible; iteration 0 has no previous one and is
``null``. ``blocks`` adds a third index, the block, in the order of ``blocks``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prunesched.errors import ConfigError
from prunesched.files import read_text

FORMAT = "prunesched.calibration"
VERSION = 1

SIGNALS = {
    "first_block": "relative L1 change of the first block's residual (FirstBlockCache's signal)",
    "output": "relative L1 change of the model output (what TeaCache's rescaled input change estimates)",
    "magnitude_ratio": "mean norm ratio of the blocks' residual to the previous iteration's (MagCache's signal)",
    "blocks": "relative L1 change of each block's output",
}
"""The signals a calibration records, by name."""

ARCHITECTURES = ("unet", "dit")


@dataclass(frozen=True, eq=False)
class Calibration:
    """A recorded calibration (see the module docstring for the document).

    Attributes:
        model: the model as it was named (``shapes``, a folder, a hub id); ``fingerprint`` is
            :func:`prunesched.models.loading.model_fingerprint` of it.
        architecture: ``"unet"`` or ``"dit"``: which partial step FirstBlockCache's cached steps become.
        loop_length: loop iterations, the length of every schedule made from it.
        timesteps: the scheduler's timestep of each loop iteration.
        blocks: the recorded modules in the order their forward ends (a UNet's down, mid and up blocks and the
            layers its DeepCache branches read; a DiT's transformer blocks).
        branches: on a UNet, ``branches[b]`` is the block whose output a partial step at DeepCache branch ``b``
            reads from the cache; empty on a DiT.
        signals: each of :data:`SIGNALS` as an array (prompts, iterations) or, ``blocks``, (prompts, iterations,
            blocks); NaN at iteration 0.
    """

    model: str
    fingerprint: str
    architecture: str
    scheduler: str
    num_inference_steps: int
    loop_length: int
    guidance_scale: float
    seed: int
    prompts: tuple[str, ...]
    timesteps: tuple[float, ...]
    blocks: tuple[str, ...]
    branches: tuple[str, ...]
    signals: Mapping[str, np.ndarray]

    def mean(self, signal: str) -> np.ndarray:
        """The signal averaged over the prompts: one value per iteration (per iteration and block for ``blocks``)."""
        return np.asarray(self.signals[signal]).mean(axis=0)

    def spread(self, signal: str) -> np.ndarray:
        """The signal's standard deviation over the prompts, shaped like :meth:`mean`."""
        return np.asarray(self.signals[signal]).std(axis=0)

    def check(self, fingerprint: str | None, loop_length: int, where: str) -> None:
        """Refuse, in one line naming ``where`` it is used, a calibration of other weights or another loop length.

        ``fingerprint`` is None where there is no model to compare with (the synthetic evaluator).
        """
        if fingerprint is not None and fingerprint != self.fingerprint:
            raise ConfigError(
                f"{where}: the calibration was recorded on {self.model!r} ({self.fingerprint}), not on this model ({fingerprint}); "
                "record one on it with 'prunesched calibrate MODEL'"
            )
        if loop_length != self.loop_length:
            raise ConfigError(
                f"{where}: the calibration covers {self.loop_length} loop iterations ({self.num_inference_steps} inference steps of "
                f"{self.scheduler}) but the search's schedules have {loop_length}; calibrate at the search's num_inference_steps"
            )

    def to_dict(self) -> dict[str, Any]:
        """The calibration document as plain JSON data (NaN written as null)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            **{name: getattr(self, name) for name in ("model", "fingerprint", "architecture", "scheduler")},
            **{name: getattr(self, name) for name in ("num_inference_steps", "loop_length", "guidance_scale", "seed")},
            **{name: list(getattr(self, name)) for name in ("prompts", "timesteps", "blocks", "branches")},
            "signals": {name: _json(np.asarray(values).tolist()) for name, values in self.signals.items()},
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "calibration") -> Calibration:
        """Validate a parsed calibration document; ``source`` names it in the one-line errors."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ConfigError(f"{source} is not a calibration document (format {FORMAT!r}); record one with 'prunesched calibrate MODEL'")
        if data.get("version") != VERSION:
            raise ConfigError(f"{source} has calibration version {data.get('version')!r}; this prunesched reads version {VERSION}")
        fields = {"format", "version", *cls.__dataclass_fields__}
        if set(data) != fields:
            wrong = sorted(set(data) ^ fields)[0]
            state = "missing" if wrong in fields else "unknown"
            raise ConfigError(f"{source}: field {wrong!r} is {state}; a calibration holds {', '.join(sorted(fields))}")
        try:
            calibration = cls(
                model=str(data["model"]),
                fingerprint=str(data["fingerprint"]),
                architecture=str(data["architecture"]),
                scheduler=str(data["scheduler"]),
                num_inference_steps=_integer(data["num_inference_steps"], "num_inference_steps"),
                loop_length=_integer(data["loop_length"], "loop_length"),
                guidance_scale=float(data["guidance_scale"]),
                seed=_integer(data["seed"], "seed"),
                prompts=_strings(data["prompts"], "prompts"),
                timesteps=tuple(float(t) for t in data["timesteps"]),
                blocks=_strings(data["blocks"], "blocks"),
                branches=_strings(data["branches"], "branches"),
                signals={name: _array(value, name) for name, value in _mapping(data["signals"]).items()},
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source} is malformed: {exc}") from None
        calibration._validate(source)
        return calibration

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read a calibration file (as ``prunesched calibrate`` writes it)."""
        text = read_text(path, "calibration file", ConfigError)
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise ConfigError(f"calibration file {str(path)!r} is not JSON; record one with 'prunesched calibrate MODEL'") from None
        return cls.from_dict(data, f"calibration file {str(path)!r}")

    def save(self, path: str | Path) -> Path:
        """Write the document as JSON, all or nothing (:func:`prunesched.storage.outputs.write_output`)."""
        from prunesched.storage.outputs import write_output

        return write_output(path, (json.dumps(self.to_dict(), indent=1) + "\n").encode("utf-8"), None)

    def _validate(self, source: str) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"{source}: architecture {self.architecture!r} is not one of {', '.join(ARCHITECTURES)}")
        if set(self.signals) != set(SIGNALS):
            raise ConfigError(f"{source}: signals must be exactly {', '.join(SIGNALS)}, got {', '.join(sorted(self.signals))}")
        steps = (len(self.prompts), self.loop_length)
        if self.loop_length < 2 or not self.prompts or len(self.timesteps) != self.loop_length:
            raise ConfigError(f"{source}: needs prompts and a loop of at least 2 iterations, one timestep each")
        for name, values in self.signals.items():
            shape = (*steps, len(self.blocks)) if name == "blocks" else steps
            if values.shape != shape:
                raise ConfigError(f"{source}: signal {name!r} has shape {values.shape}, expected {shape} (prompts, iterations[, blocks])")
            if not np.isnan(values[:, 0]).all() or not np.isfinite(values[:, 1:]).all():
                raise ConfigError(f"{source}: signal {name!r} must be null at iteration 0 and a finite number after it")
        if any(branch not in self.blocks for branch in self.branches):
            raise ConfigError(f"{source}: every entry of 'branches' must name one of its 'blocks'")


def _json(value: Any) -> Any:
    """Nested lists with NaN as None, which strict JSON can hold."""
    if isinstance(value, list):
        return [_json(v) for v in value]
    return None if math.isnan(value) else value


def _array(value: Any, name: str) -> np.ndarray:
    """Nested lists of numbers and nulls as a float array (null as NaN)."""

    def floats(item: Any) -> Any:
        if isinstance(item, list):
            return [floats(v) for v in item]
        if item is None:
            return math.nan
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise ValueError(f"signal {name!r} holds {item!r}, not a number")
        return float(item)

    return np.array(floats(value), dtype=float)


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError("'signals' must be an object")
    return value


def _integer(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name!r} must be an integer >= 0, got {value!r}")
    return value


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name!r} must be a list of strings")
    return tuple(value)
