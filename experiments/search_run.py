"""Run a search from empty caches, time its stages, and write what it found: the README's main job, and the proof
that searching beats the hand-made schedules.

    python experiments/search_run.py                     # the embedded default -> results/default_search.json
    python experiments/search_run.py --screening on -o experiments/results/default_search_screened.json
    python experiments/search_run.py --config experiments/configs/shapes_search_vs_baselines.toml \\
        -o experiments/results/shapes_search_vs_baselines.json --plot docs/images/shapes_search_vs_baselines.png

The search runs as ``prunesched search launch`` runs it (the same coordinator, a private local Ray), in a
new database, with ``PRUNESCHED_CACHE`` pointed at an empty folder so that the full model's images, reference
features and the cost table are all made within the measured time. The JSON holds the wall time of each stage,
what the screening saved and the confirmation spent (candidates and images evaluated), the validated front with intervals, every baseline
beside the searched point nearest it, whether the front dominates each DeepCache baseline, the cost model
against measured latency, and two goals against DeepCache N=3 (branch 0): the quality loss at its cost, and
the cost at its quality.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prunesched.cli.render import comparison_dict
from prunesched.report import plots
from prunesched.report.record import read_search
from prunesched.search import review
from prunesched.search.config import SearchConfig, files_beside
from prunesched.search.coordinator import Progress, launch
from prunesched.storage import Store
from prunesched.storage.records import thaw
from prunesched.storage.store import BASELINE_GENERATION

ROOT = Path(__file__).resolve().parent
GOAL_BASELINE = "DeepCache N=3 branch 0"


def load(path: Path | None, screening: bool | None) -> SearchConfig:
    """The embedded default, or a search config (a plain one, or an experiment config's ``[search]`` table), with
    screening turned on or off where ``screening`` says."""
    if path is None:
        data = SearchConfig.default().to_dict()
    else:
        data = tomllib.loads(path.read_text())
        data = data["search"] if "search" in data else files_beside(data, path.parent)
    if screening is not None:
        data["screening"] = {**data.get("screening", {}), "enabled": screening}
    return SearchConfig.from_dict(data)


def run(config: SearchConfig, db: Path) -> tuple[int, dict[str, float]]:
    """Launch the search; returns its id and the wall time of each stage in seconds, from the times the database holds."""
    begun = _now()

    def progress(update: Progress) -> None:
        if update.generation_stored:
            print(f"{_now() - begun} generation {update.generation} stored: {update.done} done", flush=True)

    search_id = launch(config, db, progress=progress)
    ended = _now()
    store = Store(db)
    created = store.search(search_id).created_at
    baselines = [e.finished_at for _, e in store.evaluations(search_id, generation=BASELINE_GENERATION) if e.finished_at]
    searched = max(g.created_at for g in store.generations(search_id))
    marks = [begun, created, max(baselines, default=created), searched, ended]
    stages = ["workers start", "baselines", "search", "validation"]
    times = {stage: round((marks[i + 1] - marks[i]).total_seconds(), 1) for i, stage in enumerate(stages)}
    return search_id, times | {"total": round((ended - begun).total_seconds(), 1)}


def _now() -> datetime:
    """Now in UTC without a zone, as SQLite gives the database's times back."""
    return datetime.now(UTC).replace(tzinfo=None)


def spent(store: Store, search_id: int) -> dict[str, Any]:
    """What the search evaluated: candidates, how many the screening left behind, how many front points were
    confirmed, and the images generated (screenings, evaluations and confirmations; not the validation's)."""
    rows = store.evaluations(search_id)
    searched = [(c, e) for c, e in rows if c.generation_born != BASELINE_GENERATION]

    def most(metrics: Any) -> int:
        return max((m["n"] for m in metrics.values()), default=0) if metrics else 0

    def images(evaluation: Any) -> int:
        screened = most(evaluation.screening["metrics"]) if evaluation.screening else 0
        if evaluation.promoted is False:
            return screened
        replaced = (evaluation.confirmation or {}).get("unconfirmed")
        return screened + most(evaluation.metrics) + (most(replaced["metrics"]) if replaced else 0)

    return {
        "baselines": len(rows) - len(searched),
        "searched": len(searched),
        "screened_out": sum(e.promoted is False for _, e in searched),
        "promoted": sum(e.promoted is True for _, e in searched),
        "confirmed": sum(bool((e.confirmation or {}).get("unconfirmed")) for _, e in rows),
        "failed": sum(e.status == "failed" for _, e in rows),
        "images_generated": sum(images(e) for _, e in rows),
    }


def described(point: review.FrontPoint, quality: str) -> dict[str, Any]:
    """A validated point: which it is, its schedule, and its validation's metrics that matter, with their intervals."""
    names = (quality, "predicted_relative_latency", "relative_latency", "caption_accuracy", "fid", "kid", "psnr")
    return {
        "candidate": point.candidate.id,
        "baseline": point.candidate.baseline,
        "generation_born": point.candidate.generation_born,
        "objectives": list(point.objectives),
        "violation_reason": point.reason,
        "metrics": {name: point.metrics[name] for name in names if name in point.metrics},
        "schedule": thaw(point.candidate.schedule),
    }


def goals(store: Store, search_id: int, rows: list[review.BaselineComparison]) -> dict[str, Any] | None:
    """Against DeepCache N=3 (branch 0), on the validation's values: the searched point of least quality loss at its
    cost or lower (and whether it is better beyond both intervals), and the cheapest searched point at its quality or better."""
    comparisons = {row.name: row for row in rows}
    if GOAL_BASELINE not in comparisons:
        return None
    baseline = comparisons[GOAL_BASELINE].baseline
    quality = str(store.search(search_id).objectives[0])
    searched = [p for p in review.validated_front(store, search_id) if p.candidate.baseline is None]
    loss, cost = baseline.objectives
    nearest = comparisons[GOAL_BASELINE].nearest
    equal = [p for p in searched if p.objectives[0] <= loss]
    cheapest = min(equal, key=lambda p: p.objectives[1], default=None)
    return {
        "baseline": GOAL_BASELINE,
        "baseline_objectives": [loss, cost],
        "baseline_interval": baseline.metrics[quality].get("ci"),
        "at_its_cost": None
        if nearest is None
        else {
            "candidate": nearest.candidate.id,
            "objectives": list(nearest.objectives),
            "interval": nearest.metrics[quality].get("ci"),
            "loss_reduction": 1 - nearest.objectives[0] / loss,
            "beyond_intervals": comparisons[GOAL_BASELINE].dominated,
            "goal": ">= 0.30 lower loss beyond the intervals",
        },
        "at_its_quality": None
        if cheapest is None
        else {
            "candidate": cheapest.candidate.id,
            "objectives": list(cheapest.objectives),
            "speedup": cost / cheapest.objectives[1],
            "goal": ">= 1.5x cheaper at equal or better quality",
        },
    }


def deepcache_dominated(rows: list[review.BaselineComparison]) -> dict[str, Any]:
    """Whether the validated front dominates each caching baseline (DeepCache's on a UNet, block caches such as F1B0
    on a DiT): a searched point at its cost or lower with a lower quality loss, and whether it is lower beyond both
    intervals."""
    each = {
        row.name: {
            "by": None if row.nearest is None else row.nearest.candidate.id,
            "dominated": row.difference is not None and row.difference < 0,
            "beyond_intervals": row.dominated,
        }
        for row in rows
        if row.name.startswith("DeepCache") or re.match(r"F\d+B\d+ ", row.name)
    }
    return {"all_dominated": all(entry["dominated"] for entry in each.values()), "each": each}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="search config [default: the embedded default]")
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "results" / "default_search.json")
    parser.add_argument("--screening", choices=("on", "off"), help="turn the config's screening on or off [default: as it says]")
    parser.add_argument("--plot", type=Path, help="write the validated front against the baselines as a PNG here")
    args = parser.parse_args()
    config = load(args.config, screening=None if args.screening is None else args.screening == "on")
    folder = Path(tempfile.mkdtemp(prefix="prunesched-run-"))
    os.environ["PRUNESCHED_CACHE"] = str(folder / "cache")  # before Ray starts: its workers inherit it
    db = folder / "search.db"
    search_id, stages = run(config, db)
    store = Store(db)
    quality = config.objectives[0]
    validated = review.validated_front(store, search_id)
    agreement = review.latency_agreement(validated)
    comparisons = review.baselines(store, search_id)
    result = {
        "what": f"{args.config or 'the embedded default search'}, from empty caches, on {os.cpu_count()} CPU cores, "
        f"{time.strftime('%Y-%m-%d')}; python experiments/search_run.py{f' --screening {args.screening}' if args.screening else ''}",
        "config": config.to_dict(),
        "wall_s": stages,
        "evaluations": spent(store, search_id),
        "front_points": len(latest.front) if (latest := store.generation(search_id)) else 0,
        "validated_front": [described(p, quality) for p in validated],
        "baselines": [comparison_dict(row) for row in comparisons],
        "latency_agreement_on_validated_front": None
        if agreement is None
        else {"spearman": agreement[0], "measured_over_predicted_median": agreement[1], "points": agreement[2]},
        "goals": goals(store, search_id, comparisons),
        "deepcache_dominated": deepcache_dominated(comparisons),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} (database: {db})")
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        args.plot.write_bytes(plots.png(plots.validated_plot(read_search(store, search_id))))
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
