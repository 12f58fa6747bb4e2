"""The search benchmark: what the search machinery costs, and how close each proposer gets to a known front.

Everything runs through the real coordinator (:func:`prunesched.search.coordinator.launch`) on a
real local Ray instance, each search in its own SQLite file in a temporary folder, with the
:class:`~prunesched.search.evaluators.SyntheticEvaluator` as the evaluator:

- **Dispatch** (:func:`measure_dispatch`): the same sleeping search (every evaluation sleeps
  ``delay_s``) with one worker and with two. The evaluation window of a run is read from the
  database: from the earliest ``started_at`` (the first dispatch) to the latest ``finished_at``
  (the last record). It holds every evaluation whole, every generation's ask/tell, front and
  snapshot commit but the last, and none of the actor start-up, so the coordinator's overhead
  per evaluation is ``window / evaluations - delay_s`` of the one-worker run, database writes
  included. Throughput is evaluations / window; the two runs evaluate the same schedules (same
  seed, deterministic evaluator), so their throughputs compare directly.
- **Database size** (:func:`db_size`): the ``.db`` plus its ``-wal`` file after each run, per
  1000 evaluations, and the same after a checkpoint folds the log in.
- **Fronts** (:func:`measure_fronts`): each proposer searches the synthetic two-objective
  problem, whose exact front :func:`~prunesched.search.evaluators.synthetic_front` computes,
  until it has ``max(checkpoints)`` distinct evaluations (duplicates are memoised, so a
  generation may add fewer than ``population``). The hypervolume of its first k evaluations, in
  the order they were first proposed, is reported for every checkpoint k, next to the exact
  front's, against one reference point shared by all.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from prunesched.runtime.schedule import StepPlan
from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import Progress, launch
from prunesched.search.dispatch import ensure_ray
from prunesched.search.evaluators import step_cost, step_error, synthetic_front
from prunesched.search.pareto import hypervolume
from prunesched.search.spaces import DatoSpace, space_from_config
from prunesched.storage.store import Store

PROPOSERS: dict[str, dict[str, str]] = {
    "pymoo-nsga2": {"backend": "pymoo"},
    "pymoo-nsga2-polynomial": {"backend": "pymoo", "mutation": "polynomial"},
    "optuna-nsga2": {"backend": "optuna", "sampler": "nsga2"},
    "optuna-tpe": {"backend": "optuna", "sampler": "tpe"},
    "random": {"backend": "random"},
}
"""The proposers compared on the synthetic front, by the name the result uses: ``[proposer]`` tables."""

WORST_MARGIN = 1.1
"""The shared reference point is this factor times the worst (error, cost) any schedule of the space can have."""

Log = Callable[[str], None]


@dataclass(frozen=True)
class SearchBenchConfig:
    """What the search benchmark runs; the defaults are the full run, a smoke test shrinks every size.

    Attributes:
        delay_s: seconds each evaluation of the dispatch runs sleeps.
        sleep_population: population of the dispatch runs.
        sleep_generations: generations of the dispatch runs (pymoo NSGA-II; about population x
            generations evaluations, the same in both runs).
        steps: ``[space] steps`` of the dato space every run searches (21: 20 free iterations, 40 genes).
        population: population of every proposer on the synthetic front.
        checkpoints: evaluation counts at which each proposer's hypervolume is reported; a
            proposer runs until it has the largest.
        max_generations: generation cap of a front run, in case duplicates keep it from the largest checkpoint.
        time_limit_s: a front run still going after this long is stopped; its budget is then reported as capped.
        proposers: names from :data:`PROPOSERS` to compare.
        seed: seed of every search.
    """

    delay_s: float = 0.2
    sleep_population: int = 20
    sleep_generations: int = 10
    steps: int = 21
    population: int = 20
    checkpoints: tuple[int, ...] = (200, 500, 2000)
    max_generations: int = 1000
    time_limit_s: float = 1800.0
    proposers: tuple[str, ...] = tuple(PROPOSERS)
    seed: int = 0


@dataclass(frozen=True)
class SearchRun:
    """One search the benchmark ran, in its own database."""

    db: Path
    search_id: int
    wall_s: float  # the whole launch call: actor start-up, every generation, actor shutdown
    stopped_by: str  # "generations" (ran to the end), "evaluations" (reached the target) or "time limit"


class _Stop(Exception):
    """Raised from the progress callback to end a search early; the coordinator marks it interrupted."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Watcher:
    """The progress callback of a benchmark search: remembers its id, logs now and then, stops it when asked."""

    def __init__(self, name: str, log: Log, target: int | None, time_limit_s: float | None, every: int = 250) -> None:
        self.name, self.log, self.target, self.time_limit_s, self.every = name, log, target, time_limit_s, every
        self.search_id: int | None = None
        self.start = time.monotonic()
        self.next_log = every

    def __call__(self, progress: Progress) -> None:
        self.search_id = progress.search_id
        elapsed = time.monotonic() - self.start
        if progress.done >= self.next_log:
            self.log(f"{self.name}: {progress.done} evaluations, generation {progress.generation}, {elapsed:.0f} s")
            self.next_log += self.every
        if self.target is not None and progress.done >= self.target:
            raise _Stop("evaluations")
        if self.time_limit_s is not None and elapsed > self.time_limit_s:
            raise _Stop("time limit")


def run_search(config: SearchConfig, db: Path, log: Log, target: int | None = None, time_limit_s: float | None = None) -> SearchRun:
    """Launch ``config`` in a new database at ``db``; stop once ``target`` evaluations are done or ``time_limit_s`` has passed."""
    watcher = _Watcher(config.name, log, target, time_limit_s)
    start = time.monotonic()
    try:
        search_id = launch(config, db, progress=watcher)
        stopped_by = "generations"
    except _Stop as stop:
        assert watcher.search_id is not None  # only the callback raises _Stop
        search_id, stopped_by = watcher.search_id, stop.reason
    return SearchRun(db=db, search_id=search_id, wall_s=time.monotonic() - start, stopped_by=stopped_by)


def search_config(
    bench: SearchBenchConfig,
    name: str,
    proposer: Mapping[str, Any],
    evaluator: Mapping[str, Any] | None = None,
    workers: int = 1,
    reference_point: Sequence[float] | None = None,
) -> SearchConfig:
    """A synthetic-evaluator search over the bench's dato space, built and validated as a config file would be."""
    return SearchConfig.from_dict(
        {
            "name": name,
            "seed": bench.seed,
            "objectives": ["error", "cost"],
            "reference_point": None if reference_point is None else list(reference_point),
            "space": {"kind": "dato", "steps": bench.steps},
            "proposer": dict(proposer),
            "evaluator": {"kind": "synthetic", **(evaluator or {})},
            "dispatch": {"workers": workers, "cpus_per_worker": 0},
        }
    )


def db_size(db: Path, evaluations: int) -> dict[str, Any]:
    """Bytes of the database, in all and per 1000 evaluations: as the run left it, and with its log folded in.

    ``db_bytes`` is the ``.db`` plus its ``-wal`` file as the run left them. SQLite reuses the
    log file without shrinking it (up to about 1000 pages between automatic checkpoints), so on
    a short run the log dominates; ``checkpointed_bytes`` is the file after a truncating
    checkpoint, i.e. the content. ``snapshot_bytes`` is the part that is proposer snapshots (JSON).
    """
    wal = db.with_name(db.name + "-wal")
    left = db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    with contextlib.closing(sqlite3.connect(db)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        snapshots = connection.execute("SELECT coalesce(sum(length(snapshot)), 0) FROM generations").fetchone()[0]
    sizes = {"db_bytes": left, "checkpointed_bytes": db.stat().st_size, "snapshot_bytes": snapshots}
    return sizes | {f"{name}_per_1000_evaluations": 1000 * size / evaluations if evaluations else None for name, size in sizes.items()}


def measure_dispatch(bench: SearchBenchConfig, folder: Path, log: Log) -> dict[str, Any]:
    """Coordinator overhead per evaluation (one worker) and throughput with one and two workers (module docstring)."""
    proposer = {"backend": "pymoo", "population": bench.sleep_population, "generations": bench.sleep_generations}
    runs: dict[str, Any] = {}
    evaluated: dict[int, set[str]] = {}
    for workers in (1, 2):
        name = f"sleep-{workers}-workers"
        run = run_search(search_config(bench, name, proposer, {"delay_s": bench.delay_s}, workers), folder / f"{name}.db", log)
        rows = Store(run.db).evaluations(run.search_id, status="done")
        evaluated[workers] = {c.schedule_hash for c, _ in rows}
        finished = [e.finished_at for _, e in rows if e.finished_at is not None]  # a done evaluation has both times
        started = [e.started_at for _, e in rows if e.started_at is not None]
        window = (max(finished) - min(started)).total_seconds()
        runs[name] = {
            "workers": workers,
            "evaluations": len(rows),
            "window_s": window,
            "launch_wall_s": run.wall_s,
            "outside_window_s": run.wall_s - window,
            "evaluations_per_s": len(rows) / window,
            "median_roundtrip_minus_delay_s": statistics.median(e.duration_s for _, e in rows if e.duration_s is not None) - bench.delay_s,
            **db_size(run.db, len(rows)),
        }
        log(f"{name}: {len(rows)} evaluations in {window:.2f} s ({runs[name]['evaluations_per_s']:.2f}/s), launch {run.wall_s:.2f} s")
    one, two = runs["sleep-1-workers"], runs["sleep-2-workers"]
    return {
        "delay_s": bench.delay_s,
        "overhead_per_evaluation_s": one["window_s"] / one["evaluations"] - bench.delay_s,
        "throughput_ratio_2_vs_1": two["evaluations_per_s"] / one["evaluations_per_s"],
        "same_evaluations": evaluated[1] == evaluated[2],
        "runs": runs,
    }


def step_options(space: DatoSpace) -> list[list[StepPlan]]:
    """The StepPlans each iteration of ``space`` can take: iteration 0 is full and unpruned, reuse is never pruned."""
    later = [StepPlan(cache, 0.0 if cache == "reuse" else ratio) for cache in space.caches for ratio in space.ratios]
    return [[StepPlan("full", 0.0)]] + [list(dict.fromkeys(later)) for _ in range(space.steps - 1)]


def reference_point(options: Sequence[Sequence[StepPlan]]) -> tuple[float, float]:
    """:data:`WORST_MARGIN` times the worst error and the worst cost a schedule drawn from ``options`` can have.

    Both objectives are sums over steps, so the worst of each is the sum of each step's worst;
    every schedule of the space then lies inside the reference box.
    """
    n = len(options)
    error = sum(max(step_error(p, i, n) for p in plans) for i, plans in enumerate(options))
    cost = sum(max(step_cost(p) for p in plans) for plans in options)
    return WORST_MARGIN * error, WORST_MARGIN * cost


def measure_fronts(bench: SearchBenchConfig, folder: Path, log: Log) -> dict[str, Any]:
    """Hypervolume of each proposer's first k evaluations for every checkpoint k, and the exact front's (module docstring)."""
    space = space_from_config({"kind": "dato", "steps": bench.steps})
    assert isinstance(space, DatoSpace)
    options = step_options(space)
    reference = reference_point(options)
    exact = synthetic_front(options)
    optimum = hypervolume(exact, reference)
    target = max(bench.checkpoints)
    log(f"exact front: {len(exact)} points, hypervolume {optimum:.4f} against reference {reference}")
    results: dict[str, Any] = {}
    for name in bench.proposers:
        proposer = {**PROPOSERS[name], "population": bench.population, "generations": bench.max_generations}
        config = search_config(bench, name, proposer, {"delay_s": 0.0}, reference_point=reference)
        run = run_search(config, folder / f"{name}.db", log, target=target, time_limit_s=bench.time_limit_s)
        store = Store(run.db)
        done = [e for _, e in store.evaluations(run.search_id, status="done")]
        points = [[e.objective_0, e.objective_1] for e in done if e.objective_0 is not None and e.objective_1 is not None]
        latest = store.generation(run.search_id)
        at = {str(k): hypervolume(points[:k], reference) if len(points) >= k else None for k in bench.checkpoints}
        results[name] = {
            "proposer": proposer,
            "evaluations": len(points),
            "generations": 0 if latest is None else latest.number + 1,
            "stopped_by": run.stopped_by,
            "budget_capped": run.stopped_by == "time limit",
            "wall_s": run.wall_s,
            "hypervolume_at": at,
            "fraction_of_optimum_at": {k: None if v is None else v / optimum for k, v in at.items()},
            "hypervolume_final": hypervolume(points, reference),
            **db_size(run.db, len(points)),
        }
        fractions = ", ".join(f"{k}: {'-' if v is None else f'{v:.3f}'}" for k, v in results[name]["fraction_of_optimum_at"].items())
        log(f"{name}: {len(points)} evaluations in {run.wall_s:.1f} s ({run.stopped_by}); fraction of optimum at {fractions}")
    return {
        "steps": bench.steps,
        "population": bench.population,
        "checkpoints": list(bench.checkpoints),
        "reference_point": list(reference),
        "exact_front_points": len(exact),
        "exact_hypervolume": optimum,
        "proposers": results,
    }


def run_search_bench(config: SearchBenchConfig, log: Log = print) -> dict[str, Any]:
    """Run the whole benchmark and return the JSON-ready result, goals included."""
    unknown = sorted(set(config.proposers) - set(PROPOSERS))
    if unknown:
        raise ValueError(f"unknown proposer {unknown[0]!r}; valid: {', '.join(PROPOSERS)}")
    ensure_ray(None)
    with tempfile.TemporaryDirectory(prefix="prunesched-bench-search-") as folder:
        dispatch = measure_dispatch(config, Path(folder), log)
        fronts = measure_fronts(config, Path(folder), log)
    result: dict[str, Any] = {"benchmark": "prunesched bench search", "meta": _meta(config), "dispatch": dispatch, "fronts": fronts}
    result["goals"] = goals(result)
    return result


HYPERVOLUME_BUDGET = 500
"""Evaluations within which the best proposer should reach :data:`HYPERVOLUME_GOAL` of the exact front's hypervolume."""
HYPERVOLUME_GOAL = 0.95


def goals(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals, each with the measured value and whether it is met (the hypervolume one where a proposer
    ran to :data:`HYPERVOLUME_BUDGET` evaluations and it is a checkpoint)."""
    overhead = result["dispatch"]["overhead_per_evaluation_s"]
    ratio = result["dispatch"]["throughput_ratio_2_vs_1"]
    out = {
        "coordinator_overhead_per_evaluation_s": {"value": overhead, "goal": "<= 0.050", "met": overhead <= 0.050},
        "throughput_2_vs_1_workers": {"value": ratio, "goal": ">= 1.8", "met": ratio >= 1.8},
    }
    budget = str(HYPERVOLUME_BUDGET)
    reached = {name: entry["fraction_of_optimum_at"].get(budget) for name, entry in result["fronts"]["proposers"].items()}
    best = max((name for name, value in reached.items() if value is not None), key=lambda name: reached[name], default=None)
    if best is not None:
        value = reached[best]
        goal = f">= {HYPERVOLUME_GOAL} of the exact front's hypervolume within {budget} evaluations ({best})"
        out[f"hypervolume_fraction_at_{budget}"] = {"value": value, "goal": goal, "met": value >= HYPERVOLUME_GOAL}
    return out


def _meta(config: SearchBenchConfig) -> dict[str, Any]:
    packages = ("prunesched", "ray", "pymoo", "optuna", "sqlalchemy", "numpy")
    return {
        "config": asdict(config),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        **{name: version(name) for name in packages},
        "scope": "real coordinator on local Ray, SQLite file per search; overhead and throughput over the evaluation window "
        "(first dispatch to last record, from the database), actor start-up excluded; hypervolumes against one shared reference",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
