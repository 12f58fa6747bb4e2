"""Evaluators defined in test code: deterministic, recording, or failing on purpose.

They are pickled by value so Ray workers need not import the tests package.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ray import cloudpickle  # Ray serialises tasks with its own copy, so registration must go there

from prunesched.runtime.schedule import Schedule
from prunesched.search.evaluators import Metrics, SyntheticEvaluator, SyntheticSettings

cloudpickle.register_pickle_by_value(sys.modules[__name__])


class RecordingEvaluator(SyntheticEvaluator):
    """The synthetic problem, appending the hash of every schedule it evaluates to ``log``."""

    def __init__(self, log: Path, delay_s: float = 0.0) -> None:
        super().__init__(SyntheticSettings(delay_s))
        self.log = Path(log)

    def evaluate(self, schedule: Schedule, images: int | None = None, timed: bool = True) -> Metrics:
        with self.log.open("a") as f:
            f.write(schedule.hash + "\n")
        return super().evaluate(schedule)


class FailingEvaluator(RecordingEvaluator):
    """Raises for every schedule that reuses at iteration 1; the synthetic problem otherwise."""

    def evaluate(self, schedule: Schedule, images: int | None = None, timed: bool = True) -> Metrics:
        metrics = super().evaluate(schedule)
        if schedule.steps[1].cache == "reuse":
            raise RuntimeError("injected failure: reuse at iteration 1")
        return metrics


def evaluated_hashes(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


class CrashingOnceEvaluator(RecordingEvaluator):
    """Kills its own process (as a segfault or CUDA abort would) the first time any worker evaluates; ``marker`` remembers it."""

    def __init__(self, log: Path, marker: Path, hang_s: float = 0.0) -> None:
        super().__init__(log)
        self.marker, self.hang_s = Path(marker), hang_s

    def evaluate(self, schedule: Schedule, images: int | None = None, timed: bool = True) -> Metrics:
        if not self.marker.exists():
            self.marker.write_text(schedule.hash)
            if self.hang_s:
                import time

                time.sleep(self.hang_s)
            else:
                import os

                os._exit(1)
        return super().evaluate(schedule)
