"""The cost model: every step plan timed once per worker, a schedule's cost predicted as the sum over its steps.

A search proposes thousands of schedules built from a few dozen step plans (a cache choice and
a prune ratio). Timing each plan once, inside the real pipeline loop, turns the latency of any
schedule into a table lookup, and analytic MACs (``torch.utils.flop_counter``) give a
device-independent cost beside it. Plans are timed next to a full step and stored relative to
it, so a machine that speeds up or slows down between measurements does not skew the table.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock
from torch.utils.flop_counter import FlopCounterMode

from prunesched.errors import ConfigError
from prunesched.evaluation.generation import ImageGenerator, key_hash, median_ratio, step_callback
from prunesched.runtime.schedule import BlockCache, Schedule, StepPlan
from prunesched.timing import Marks

FULL = "full@0.0"


def label(step: StepPlan, first: bool = False) -> str:
    """The table entry a step's cost is looked up under (``cache@prune``), named by what the step computes.

    The first step is computed in full whatever cache it asks for (no cache exists yet; the runtime falls
    back to a full step, as it records), at its prune ratio; a reuse step computes nothing, so its cost
    does not depend on its prune ratio and every reuse step is ``reuse@0.0``. A forecast step is priced as
    the copy of the same cache choice: its extrapolation is ``order + 1`` elementwise multiply-adds over the
    cached tensors (the output, on a reuse step), which the MAC count (matrix products and convolutions only)
    leaves out and which is small next to one computed block.
    """
    if first:
        return f"full@{float(step.prune)}"
    if step.cache == "reuse":
        return "reuse@0.0"
    return f"{step.cache}@{float(step.prune)}"


def labels(schedule: Schedule) -> list[str]:
    """The table entry of every step of ``schedule``, in order (see :func:`label`)."""
    return [label(step, i == 0) for i, step in enumerate(schedule.steps)]


@dataclass
class CostTable:
    """Step costs of one pipeline, batch, method and device.

    ``relative[l]``: the time of a step with plan ``l`` over the time of the full step before it
    (median of pairs); ``full_s``: a full step's seconds; ``overhead``: a call's time outside its
    steps, in full steps; ``unaccelerated``: the unpatched pipeline's call time, in full steps;
    ``macs[l]``: multiply-accumulates of the step's denoiser call.
    """

    key: dict[str, Any]
    full_s: float = 0.0
    overhead: float = 0.0
    unaccelerated: float = 0.0
    relative: dict[str, float] = field(default_factory=dict)
    macs: dict[str, int] = field(default_factory=dict)

    def steps(self, schedule: Schedule) -> float:
        """The schedule's call time in full steps, summed exactly: schedules of the same steps in another order cost
        the same to the last bit (a one-ulp difference once kept a dominated baseline on a front)."""
        return math.fsum([self.overhead, *(self.relative[name] for name in labels(schedule))])

    def latency_s(self, schedule: Schedule) -> float:
        return self.full_s * self.steps(schedule)

    def relative_latency(self, schedule: Schedule) -> float:
        """Predicted latency over the unaccelerated pipeline's, the quantity a measured ``relative_latency`` estimates."""
        return self.steps(schedule) / self.unaccelerated

    def schedule_macs(self, schedule: Schedule) -> int:
        return sum(self.macs[name] for name in labels(schedule))

    def relative_macs(self, schedule: Schedule) -> float:
        return self.schedule_macs(schedule) / (len(schedule) * self.macs[FULL])


class CostModel:
    """A worker's cost table for one generator and method, profiled on demand and kept on disk.

    A plan is profiled the first time a schedule needs it; the table file is keyed by the model,
    image size, batch, guidance, device and method, so a worker restarted on the same machine
    profiles nothing again. The workers of one machine share the file: a plan is profiled by one of
    them, under a file lock, and the others read its entry, so that a schedule's predicted cost does
    not depend on which worker evaluated it (each timing its own plans, two workers' tables once
    differed by up to 12 %). An entry, once written, never changes.
    """

    def __init__(self, generator: ImageGenerator, cache_dir: str | Path, repeats: int = 5) -> None:
        self.generator, self.repeats, self.cache_dir = generator, repeats, Path(cache_dir)
        self.tables: dict[str, CostTable] = {}

    def table(self, schedule: Schedule) -> CostTable:
        """The table for ``schedule``'s method and slots, with every plan it uses profiled."""
        key = self._key(schedule)
        name = key_hash(key)
        table = self.tables.get(name)
        if table is None or _missing(table, schedule) is not None:
            path = self._path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(path.with_suffix(".lock")):  # the table as the machine's workers have profiled it so far
                table = self._load(name) or CostTable(key)
                missing = _missing(table, schedule)
                if missing is not None:
                    self._profile(table, [_plan(name) for name in missing], schedule)
                    self._save(name, table)
            self.tables[name] = table
        return table

    def measure(self, schedule: Schedule) -> float:
        """The schedule's measured call time in full steps of the same call, what :meth:`CostTable.steps` predicts.

        The unit is the full-step time each computed step implies (its time over its table cost), so the
        number holds still while the machine's speed drifts; reused steps, too short to time, are not used for it.
        Because the unit leans on the table, an error in one plan's cost shows only in proportion to the other
        plans' share of the schedule; the independent check is a paired end-to-end ratio (the benchmark's).
        """
        table = self.table(schedule)
        gaps, outside = self._time(schedule)
        implied = [gap / table.relative[name] for gap, name in zip(gaps, labels(schedule)) if not name.startswith("reuse")]
        return (sum(gaps) + outside) / statistics.median(implied)

    def _key(self, schedule: Schedule) -> dict[str, Any]:
        identity = self.generator.identity
        keep = ("model", "size", "batch_size", "device", "dtype", "torch", "diffusers", "prunesched")
        return {
            **{k: identity[k] for k in keep},
            "guidance": self.generator.spec.guidance_scale > 1,
            "host": platform.node(),
            "processor": platform.processor(),
            "loop_length": self.generator.loop_length,
            "attention": self.generator.attention,
            "method": schedule.to_dict()["method"],
            "slots": schedule.to_dict()["slots"],
        }

    def _profile(self, table: CostTable, plans: list[StepPlan], like: Schedule) -> None:
        """Count each plan's MACs (that pass also warms up), then time it next to a full step ``repeats`` times."""
        loop = self.generator.loop_length
        all_full = Schedule(steps=(StepPlan("full"),) * loop, method=like.method, slots=like.slots)
        if loop < 3:
            raise ConfigError(f"the cost model needs a loop of at least 3 iterations to time a step after a full one, got {loop}")
        for schedule, _ in self._pair_schedules(plans, like):
            self._count(schedule, table)
        if FULL not in table.macs:
            self._count(all_full, table)
        if not table.full_s:  # the units of the table: a full step, and the calls around the steps
            runs = [self._time(all_full) for _ in range(self.repeats)]
            table.full_s = statistics.median(statistics.median(gaps) for gaps, _ in runs)
            table.overhead = statistics.median(outside / statistics.median(gaps) for gaps, outside in runs)
            table.relative[FULL] = 1.0
            patched, unpatched = self.generator.latency(all_full, self.repeats)
            table.unaccelerated = (table.overhead + loop) * median_ratio(unpatched, patched)
        ratios: dict[str, list[float]] = {label(plan): [] for plan in plans}
        for _ in range(self.repeats):
            for schedule, pairs in self._pair_schedules(plans, like):
                gaps, _ = self._time(schedule)
                for i, plan in pairs:
                    ratios[label(plan)].append(gaps[i + 1] / gaps[i])
        table.relative.update({name: statistics.median(values) for name, values in ratios.items() if values})

    def _pair_schedules(self, plans: list[StepPlan], like: Schedule) -> list[tuple[Schedule, list[tuple[int, StepPlan]]]]:
        """Schedules of the loop's length holding a ``[full, plan]`` pair for every plan, each with (full step index, plan)
        of its pairs. Step 0 is a full step of its own: the cache does not exist before it.
        """
        loop = self.generator.loop_length
        per_call = max(1, (loop - 1) // 2)
        out = []
        for start in range(0, len(plans), per_call):
            chunk = plans[start : start + per_call]
            steps = [StepPlan("full")] + [step for plan in chunk for step in (StepPlan("full"), plan)]
            steps += [StepPlan("full")] * (loop - len(steps))
            schedule = Schedule(steps=tuple(steps[:loop]), method=like.method, slots=like.slots)
            out.append((schedule, [(1 + 2 * j, plan) for j, plan in enumerate(chunk)]))
        return out

    def _time(self, schedule: Schedule) -> tuple[list[float], float]:
        """Each step's seconds (step 0 from its denoiser call on) and the call's seconds outside its steps."""
        marks = Marks(self.generator.device)
        hook = self.generator.denoiser.register_forward_pre_hook(lambda *_: marks.mark() if len(marks.points) == 1 else None)
        try:
            marks.mark()
            self.generator.first_batch(schedule, **step_callback(self.generator.pipe, lambda _i: marks.mark()))
            marks.mark()
        finally:
            hook.remove()
        gaps = marks.gaps()
        return gaps[1:-1], gaps[0] + gaps[-1]

    def _count(self, schedule: Schedule, table: CostTable) -> None:
        """Record the multiply-accumulates of each step's denoiser calls (none for a reused step, which computes nothing)."""
        per_step = [0] * len(schedule)
        step = [0]
        denoiser = self.generator.denoiser
        counter: list[FlopCounterMode] = []

        def before(*_: Any) -> None:
            counter.append(FlopCounterMode(display=False))
            counter[-1].__enter__()

        def after(*_: Any) -> None:
            counter[-1].__exit__(None, None, None)
            per_step[step[0]] += counter.pop().get_total_flops() // 2

        def step_end(i: int) -> None:
            step[0] = i + 1

        hooks = [denoiser.register_forward_pre_hook(before), denoiser.register_forward_hook(after)]
        try:
            self.generator.first_batch(schedule, **step_callback(self.generator.pipe, step_end))
        finally:
            for hook in hooks:
                hook.remove()
        for i, macs in enumerate(per_step):
            table.macs.setdefault(label(schedule.steps[i], i == 0), macs)

    def _path(self, name: str) -> Path:
        return self.cache_dir / "cost" / f"{name}.json"

    def _load(self, name: str) -> CostTable | None:
        """The stored table, or None when there is none or it cannot be read (it is then profiled again)."""
        try:
            return CostTable(**json.loads(self._path(name).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _save(self, name: str, table: CostTable) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(handle, "w") as file:
            json.dump(asdict(table), file, indent=2, sort_keys=True)
        os.replace(temporary, path)


def _missing(table: CostTable, schedule: Schedule) -> list[str] | None:
    """The plans of ``schedule`` that ``table`` lacks (an empty list when it lacks only its units); None: it lacks nothing."""
    missing = sorted(set(labels(schedule)) - set(table.relative) - {FULL})
    return missing if missing or not table.full_s else None


def _plan(name: str) -> StepPlan:
    cache, prune = name.split("@")
    if cache in ("full", "reuse"):
        return StepPlan(cache, float(prune))
    return StepPlan(BlockCache.from_name(cache) if cache.startswith("F") else int(cache), float(prune))
