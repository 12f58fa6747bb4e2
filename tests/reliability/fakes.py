"""An evaluator that injects one fault into the first schedule it is given, for a set number of attempts.

Pickled by value, like ``tests/search/fakes.py``, so Ray workers need not import the tests package.
Everything it knows lives in files, because a fault may kill the worker process that holds it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from ray import cloudpickle  # Ray serialises tasks with its own copy, so registration must go there

from prunesched.runtime.schedule import Schedule
from prunesched.search.evaluators import Metrics, SyntheticEvaluator, worker_name
from tests.search.fakes import evaluated_hashes as lines  # the entries of a log file, one per line

cloudpickle.register_pickle_by_value(sys.modules[__name__])

FAULTS = ("exit", "hang", "raise", "nan", "inf", "missing", "not-a-number")


class FaultyEvaluator(SyntheticEvaluator):
    """The synthetic problem, with ``fault`` on the first ``times`` attempts at the struck schedule.

    Meant for one worker. In ``folder``: ``struck`` holds the struck schedule's hash, ``attempts``
    one line (the worker's name) per attempt at it, and ``done`` the hash of every evaluation
    that returned sound metrics, written after it finished.
    """

    def __init__(self, folder: Path, fault: str, times: int) -> None:
        super().__init__()
        self.folder, self.fault, self.times = Path(folder), fault, times

    def evaluate(self, schedule: Schedule, images: int | None = None, timed: bool = True) -> Metrics:
        metrics = super().evaluate(schedule)
        if self._strikes(schedule):
            metrics = self._inject(metrics)
        else:
            with (self.folder / "done").open("a") as f:
                f.write(schedule.hash + "\n")
        return metrics

    def _strikes(self, schedule: Schedule) -> bool:
        struck = self.folder / "struck"
        if not struck.exists():  # the first schedule the (single) worker sees
            struck.write_text(schedule.hash)
        if struck.read_text() != schedule.hash:
            return False
        with (self.folder / "attempts").open("a") as f:
            f.write(worker_name() + "\n")
        return len(lines(self.folder / "attempts")) <= self.times

    def _inject(self, metrics: Metrics) -> Metrics:
        if self.fault == "exit":  # killed mid-evaluation, as by a segfault or the OOM killer
            time.sleep(0.2)
            os._exit(1)
        if self.fault == "hang":
            time.sleep(600)
        if self.fault == "raise":
            raise RuntimeError("injected fault")
        value = {"nan": float("nan"), "inf": float("inf"), "not-a-number": "fast"}.get(self.fault)
        if self.fault == "missing":
            return {"error": metrics["error"]}
        return {**metrics, "cost": {**metrics["cost"], "value": value}}


class NumpyEvaluator(SyntheticEvaluator):
    """The synthetic problem with its values as numpy scalars and a NaN in a metric that is no objective."""

    def evaluate(self, schedule: Schedule, images: int | None = None, timed: bool = True) -> Metrics:
        metrics = super().evaluate(schedule)
        as_numpy = {name: {**m, "value": np.float32(m["value"])} for name, m in metrics.items()}
        return {**as_numpy, "spread": {"value": float("nan"), "n": np.int64(1), "ci": None}}


def strict_json(text: str) -> object:
    """JSON as the standard has it: no NaN or Infinity, which Python's json would otherwise accept."""
    return json.loads(text, parse_constant=_refuse)


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")
