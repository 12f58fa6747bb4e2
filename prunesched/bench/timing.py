"""Honest timing: warm-up excluded, median of repeats, CUDA events on a GPU, host clock on a CPU."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch


@dataclass(frozen=True)
class Timing:
    """Seconds of each timed repeat and their median."""

    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def to_dict(self) -> dict[str, Any]:
        return {"median_s": self.median, "repeats_s": list(self.seconds)}


class Stopwatch:
    """Times regions on one device: CUDA events there (no host sync inside the region), ``perf_counter`` on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    @contextmanager
    def region(self, out: list[float]) -> Iterator[None]:
        """Append the seconds spent in the ``with`` block to ``out``."""
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end) / 1000)
        else:
            start_s = time.perf_counter()
            yield
            out.append(time.perf_counter() - start_s)

    def measure(self, fn: Callable[[], Any], repeats: int, warmup: int = 1) -> Timing:
        """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed."""
        for _ in range(warmup):
            fn()
        seconds: list[float] = []
        for _ in range(repeats):
            with self.region(seconds):
                fn()
        return Timing(tuple(seconds))
