"""Paired step timing: a step kind timed in a loop of alternating [full, X] iterations, relative to the full step.

The primitives (:class:`~prunesched.timing.Sample`, :class:`~prunesched.timing.Stopwatch`) are in
:mod:`prunesched.timing`, which the evaluation uses too. On shared virtual machines the CPU's speed
drifts by tens of percent within a minute, so a benchmark compares each step with the full step
timed just before it (see :data:`RELATIVE` and :func:`paired`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from prunesched.runtime.methods import TokenMethod
from prunesched.runtime.schedule import Schedule, StepPlan
from prunesched.timing import Sample

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


def alternating(plan: StepPlan, repeats: int, method: TokenMethod | None = None) -> Schedule:
    """The loop :func:`paired` reads: ``[full, plan]``, a warm-up pair, then ``repeats`` timed pairs, with ``method``
    (the schedule's default when None) pruning any tokens ``plan`` prunes."""
    steps = (StepPlan(), plan) * (1 + repeats)
    return Schedule(steps=steps) if method is None else Schedule(steps=steps, method=method)


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
