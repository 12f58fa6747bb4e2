"""Honest timing: warm-up excluded, median of repeats, CUDA events on a GPU, host clocks on a CPU.

On a CPU each region is measured twice: wall-clock time, which is what a user waits for, and the
process's CPU time, kept for information. Neither is steady on a shared virtual machine: steal
time moved wall-clock step times by tens of percent within minutes, and CPU time is no cure,
because OpenMP threads spin while their sibling is descheduled and spinning counts. Callers
compare neighbouring regions instead (see :func:`paired`).
"""

from __future__ import annotations

import statistics
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

RELATIVE = "relative_to_full"
"""The cost every ratio, composition and goal uses: the median over timed pairs of (step time / the full step
timed just before it). Every measured loop is [full, X] + [full, X] * repeats: the first pair warms up (and
fills the caches and the DiffScore history). On shared virtual machines the CPU's speed drifts by tens of
percent within a minute (hypervisor steal time), so only neighbours are compared."""


@dataclass(frozen=True)
class Timing:
    """Timed repeats of one configuration and their medians."""

    samples: tuple[Sample, ...]

    @property
    def median(self) -> Sample:
        return Sample(statistics.median(s.wall for s in self.samples), statistics.median(s.cpu for s in self.samples))

    def to_dict(self) -> dict[str, Any]:
        median = self.median
        return {
            "median_s": median.wall,
            "repeats_s": [s.wall for s in self.samples],
            "cpu_median_s": median.cpu,
            "cpu_repeats_s": [s.cpu for s in self.samples],
        }


def timing_device() -> tuple[torch.device, torch.dtype]:
    """Where the benchmarks time by default: a CUDA GPU in fp16 when there is one, else the CPU in fp32."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return device, torch.float16 if device.type == "cuda" else torch.float32


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


def paired(times: list[Sample]) -> dict[str, Any]:
    """One step kind, from a loop of alternating [full, X] iterations whose first pair is a warm-up.

    X's times and medians, the full steps they are paired with, and X relative to the full step
    just before it (median over pairs), on wall-clock and on CPU time.
    """
    references, steps = times[2::2], times[3::2]
    return {
        **Timing(tuple(steps)).to_dict(),
        "reference_full_s": [r.wall for r in references],
        RELATIVE: statistics.median(x.wall / r.wall for r, x in zip(references, steps)),
        "cpu_relative_to_full": statistics.median(x.cpu / r.cpu for r, x in zip(references, steps)),
    }
