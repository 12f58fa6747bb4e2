"""Where a step's time goes: the operators of one denoiser call, from torch's profiler.

A paired timing says that a pruned step is slow, not why. On a GPU the answer is in the kernels
(a launch-bound step, a fused attention replaced by an explicit one, a slow gather), so the
benchmarks that find a step slower than its MACs say can record the busiest operators of one
full call and one call of the step beside it (``profile`` in their configs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from prunesched.bench.loop import DenoiserLoop
from prunesched.runtime.schedule import Schedule

TOP = 12
"""Operators kept per profiled call."""


def profile_pair(loop: DenoiserLoop, schedule: Schedule, top: int = TOP) -> dict[str, Any]:
    """The busiest operators of the last two calls of ``schedule``, which a
    :func:`~prunesched.bench.paired_timing.alternating` loop ends with a full call and a call of the step under test.

    Returns ``{"full": ..., "step": ...}``, each with the call's total self time (device time on a GPU,
    where it is what the step waits on, and host time, which on a GPU is mostly launches), its count
    of profiled events (operators, and kernels on a GPU), and its ``top`` ones by self time (name, calls,
    milliseconds); and ``only_in_step``, the names of the events the step runs and the full call does not
    (what the method adds), by the step's self time.
    """
    cuda = loop.sample.device.type == "cuda"
    profiled: dict[str, Any] = {}
    events: dict[str, list[Any]] = {}
    last = len(schedule) - 2

    def around(i: int) -> contextlib.AbstractContextManager[Any]:
        if i < last:
            return contextlib.nullcontext()
        return _recorded(events.setdefault("full" if i == last else "step", []), cuda)

    loop.run(schedule, around)
    clock = "self_device_time_total" if cuda else "self_cpu_time_total"
    ranked = {name: sorted(recorded, key=lambda e: getattr(e, clock), reverse=True) for name, recorded in events.items()}
    for name, busiest in ranked.items():
        profiled[name] = {
            "clock": "device" if cuda else "cpu",
            "total_ms": sum(getattr(e, clock) for e in busiest) / 1000,
            "host_ms": sum(e.self_cpu_time_total for e in busiest) / 1000,
            "events": sum(e.count for e in busiest),
            "top": [{"name": e.key, "calls": e.count, "self_ms": getattr(e, clock) / 1000} for e in busiest[:top]],
        }
    in_full = {e.key for e in ranked["full"]}
    profiled["only_in_step"] = [e.key for e in ranked["step"] if e.key not in in_full]
    return profiled


@contextlib.contextmanager
def _recorded(into: list[Any], cuda: bool) -> Iterator[None]:
    """Profile the block (its kernels too, with ``cuda``) and put its events, averaged by name, into ``into``."""
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    with profile(activities=activities) as recording:
        yield
        if cuda:
            torch.cuda.synchronize()  # the call's kernels finish inside the recording
    into.extend(recording.key_averages())
