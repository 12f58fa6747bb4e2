"""Honest timing on one device: CUDA events on a GPU, host clocks on a CPU, and the one choice of that device.

The benchmarks (:mod:`prunesched.bench`) and the evaluation's latency and cost model
(:mod:`prunesched.evaluation`) both time with these, so they sit below both.

On a CPU each region is measured twice: wall-clock time, which is what a user waits for, and the
process's CPU time, kept for information. Neither is steady on a shared virtual machine: steal
time moved wall-clock step times by tens of percent within minutes, and CPU time is no cure,
because OpenMP threads spin while their sibling is descheduled and spinning counts. Callers
therefore compare neighbouring regions (a schedule's run against the full run next to it).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Sample:
    """One timed region: wall-clock seconds and CPU seconds (equal to wall on a GPU, where the host clock says little)."""

    wall: float
    cpu: float

    def __add__(self, other: Sample) -> Sample:
        return Sample(self.wall + other.wall, self.cpu + other.cpu)


ZERO = Sample(0.0, 0.0)


def pick_device(name: str = "auto") -> torch.device:
    """The device ``name`` asks for; ``"auto"`` is a CUDA GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """What a benchmark's result says it ran on: the GPU's name, else the CPU's (its processor, or the machine type)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
"""The precisions a pipeline can run in, by the name a config gives."""


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """The precision ``name`` (a key of :data:`DTYPES`) asks for; ``"auto"`` is fp16 on a GPU, as SD-class models are
    served there, and fp32 on a CPU, where fp16 is slow or unsupported."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def timing_device(name: str = "auto") -> tuple[torch.device, torch.dtype]:
    """Where, and in which precision, a benchmark times: :func:`pick_device`, in :func:`pick_dtype`'s ``"auto"`` precision."""
    device = pick_device(name)
    return device, pick_dtype("auto", device)


class Stopwatch:
    """Times regions on one device: CUDA events there (no host sync inside the region), host clocks on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    @contextmanager
    def region(self, out: list[Sample]) -> Iterator[None]:
        """Append the time spent in the ``with`` block to ``out``."""
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            end.synchronize()
            seconds = start.elapsed_time(end) / 1000
            out.append(Sample(seconds, seconds))
        else:
            wall, cpu = time.perf_counter(), time.process_time()
            yield
            out.append(Sample(time.perf_counter() - wall, time.process_time() - cpu))


class Marks:
    """Points in time on one device (CUDA events there, so marking never waits for the GPU), read as gaps at the end."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.points: list[Any] = []

    def mark(self) -> None:
        """Record the present moment (on a GPU: once the work queued so far has run)."""
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.points.append(event)
        else:
            self.points.append(time.perf_counter())

    def gaps(self) -> list[float]:
        """Seconds between consecutive marks."""
        if self.cuda:
            self.points[-1].synchronize()
            return [a.elapsed_time(b) / 1000 for a, b in zip(self.points, self.points[1:])]
        return [b - a for a, b in zip(self.points, self.points[1:])]
