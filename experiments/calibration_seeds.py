"""Do a calibration's seeds help a search? The same search with and without them, validated hypervolume per evaluation.

    python experiments/calibration_seeds.py --model shapes        # -> experiments/results/calibration_seeds_shapes.json
    python experiments/calibration_seeds.py --model shapes-dit    # the shapes DiT in DaTo's space over reuse, depth 0, full
    python experiments/calibration_seeds.py --config prunesched/search/presets/shapes-dit.toml   # the DiT preset

It records a calibration of the model (4 prompts at the search's steps, guidance and prompt set, as ``prunesched
calibrate``), or takes the config's own ``[calibration]`` (the shapes-dit preset's), then runs the same search
twice, with the same config, budget and seed: once without calibration, once with ``[calibration] seeds = true``
(the threshold schedules of FirstBlockCache, TeaCache and MagCache at the config's thresholds, projected into the
space, start the first generation; neither search evaluates them as baselines, so both evaluate the same
baselines and the same number of generations). The search is ``--config`` (the
embedded default unless given) on ``--model``, with fewer images per candidate, the evaluator's own objectives and
guardrails, and the search's own validation off; a DiT given a UNet's space gets DaTo's per-step space over reuse,
depth 0 (its first and last block) and full steps, without pruning. The cost objective is relative MACs: the cost
model's predicted latency comes from a table each worker times on its own, and on a busy machine two workers (or
two searches) price one schedule differently, which would favour one search. Both searches share one cache folder,
so the full model's images and the cost table are made once.

Each search's evaluations are taken in the order they were proposed (the baselines first); after each one the front
of those done so far (within the guardrails) is evaluated again on the validation's images (``[validation]``
factor times the images, fresh seeds, as a search's validation), and its validated hypervolume is the area those
points dominate up to one reference point for both searches (beyond the worst validated point). The JSON holds
both curves and, for the lower of the two final hypervolumes, how many evaluations each search needed to reach it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from prunesched.calibration.recording import calibration_generator, record
from prunesched.calibration.thresholds import RULES, strip
from prunesched.evaluation.evaluate import PipelineEvaluator
from prunesched.runtime.schedule import Schedule
from prunesched.search import guardrails
from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import Progress, launch
from prunesched.search.pareto import front_indices, hypervolume, reference_point
from prunesched.search.spaces import nearest_genome
from prunesched.search.validation import ValidationConfig, validation_settings
from prunesched.storage import Store

ROOT = Path(__file__).resolve().parent


def search_config(data: dict[str, Any], args: argparse.Namespace, dit: bool, calibration: Path | None) -> SearchConfig:
    """The search ``data`` describes at this budget, without its own validation, with the evaluator's
    objectives and guardrails; a DiT in a UNet's space gets DaTo's per-step space over its reuse, depth 0 and full
    steps instead; seeded from ``calibration`` where one is given."""
    data = {**data, "name": f"calibration-seeds-{'seeded' if calibration else 'plain'}", "validation": {"enabled": False}}
    # MACs, not the cost model's predicted latency: each worker times its own cost table, so on a busy machine two
    # workers of one search, or two searches, can price one schedule differently, which would favour one search
    data["evaluator"] = {**data["evaluator"], "images": args.images, "cost": ["macs"]}
    data["proposer"] = {**data.get("proposer", {}), "population": args.population, "generations": args.generations}
    for key in ("objectives", "guardrails"):  # the evaluator's own: its first quality metric and relative MACs; its guardrails
        data.pop(key, None)
    if dit and data["space"].get("kind", "dato") == "dato" and data["space"].get("method", {}).get("name") != "cat":
        data["space"] = {
            "kind": "dato",
            "steps": data["space"]["steps"],
            "caches": ["reuse", 0, "full"],
            "ratios": [0.0],
            "method": {"name": "cat"},
        }
    thresholds = data.pop("calibration")["thresholds"]  # neither search evaluates a config's own calibration baselines
    if calibration is not None:
        data["calibration"] = {"file": str(calibration), "thresholds": thresholds, "baselines": False, "seeds": True}
    return SearchConfig.from_dict(data)


def evaluations(store: Store, search_id: int) -> list[tuple[str, dict[str, Any], tuple[float, float] | None]]:
    """Every finished evaluation in the order it was proposed: schedule hash, schedule, and its objectives where it is
    done within the guardrails (None: failed or outside them, so it never stands on a front)."""
    rows = sorted((c.id, c, e) for c, e in store.evaluations(search_id) if e.status in ("done", "failed"))
    return [
        (c.schedule_hash, dict(c.schedule), (e.objective_0, e.objective_1) if e.status == "done" and not e.violation else None)
        for _, c, e in rows
    ]


def prefix_fronts(rows: list[tuple[str, dict[str, Any], tuple[float, float] | None]]) -> list[list[str]]:
    """After each evaluation, the schedule hashes on the front of the evaluations so far."""
    fronts, points, hashes = [], [], []
    for schedule_hash, _, objectives in rows:
        if objectives is not None:
            points.append(objectives)
            hashes.append(schedule_hash)
        fronts.append([hashes[i] for i in front_indices(points)] if points else [])
    return fronts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a built-in name, a diffusers folder or a cached hub id [default: the config's model]")
    parser.add_argument("--config", type=Path, help="the search config to run [default: the embedded default]; its model is --model")
    parser.add_argument("--images", type=int, default=8, help="images per candidate (the embedded default has 16)")
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--factor", type=int, default=4, help="validation images = factor x images")
    parser.add_argument("-o", "--out", type=Path, help="[default: experiments/results/calibration_seeds_MODEL.json]")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="prunesched-seeds-"))
    os.environ["PRUNESCHED_CACHE"] = str(folder / "cache")  # before Ray starts: its workers inherit it
    begun = time.monotonic()
    loaded = SearchConfig.default() if args.config is None else SearchConfig.load(args.config)
    data = loaded.to_dict()
    evaluator = data["evaluator"] = {**data["evaluator"], "model": args.model or data["evaluator"]["model"]}
    model = evaluator["model"]  # the calibration runs what the search's evaluator runs
    steps, guidance = evaluator["num_inference_steps"], evaluator["guidance_scale"]
    calibration = loaded.calibration.calibration  # a config's own seeds it (the shapes-dit preset's) where it has one
    if calibration is None:
        generator = calibration_generator(model, num_inference_steps=steps, guidance_scale=guidance, prompt_set=evaluator["prompts"])
        calibration = record(generator)
    path = calibration.save(folder / "calibration.json")
    wall = {"calibration": round(time.monotonic() - begun, 1)}
    dit = calibration.architecture == "dit"
    out = args.out or ROOT / "results" / f"calibration_seeds_{Path(model).name}.json"
    configs = {name: search_config(data, args, dit, None if name == "plain" else path) for name in ("plain", "seeded")}
    rows = {}

    def report(update: Progress) -> None:
        if update.generation_stored:
            print(f"  generation {update.generation}: {update.done} evaluations", flush=True)

    for name, config in configs.items():
        started = time.monotonic()
        db = folder / f"{name}.db"
        search_id = launch(config, db, progress=report)
        rows[name] = evaluations(Store(db), search_id)
        wall[f"search {name}"] = round(time.monotonic() - started, 1)
        print(f"search {name}: {len(rows[name])} evaluations in {wall[f'search {name}']} s", flush=True)

    import ray

    ray.shutdown()  # the workers' memory goes to the validation
    started = time.monotonic()
    config = configs["seeded"]
    settings = validation_settings(config.evaluator, ValidationConfig(factor=args.factor))
    assert settings is not None
    validator = PipelineEvaluator(settings)
    fronts = {name: prefix_fronts(found) for name, found in rows.items()}
    schedules = {h: s for found in rows.values() for h, s, _ in found}
    needed = sorted({h for per_run in fronts.values() for front in per_run for h in front})
    validated: dict[str, tuple[float, float] | None] = {}
    for i, schedule_hash in enumerate(needed):
        metrics = validator.evaluate(Schedule.from_dict(schedules[schedule_hash]), timed=False)
        violation, _ = guardrails.check(config.guardrails, metrics, validator.full_metrics())
        objectives = (metrics[config.objectives[0]]["value"], metrics[config.objectives[1]]["value"])
        validated[schedule_hash] = None if violation else objectives
        print(f"validated {i + 1}/{len(needed)}", flush=True)
    wall["validation"] = round(time.monotonic() - started, 1)
    kept = [v for v in validated.values() if v is not None]
    reference = reference_point(kept)
    curves = {
        name: [hypervolume([validated[h] for h in front if validated[h] is not None] or [reference], reference) for front in per_run]
        for name, per_run in fronts.items()
    }
    target = min(curve[-1] for curve in curves.values())
    reached = {name: next(k + 1 for k, volume in enumerate(curve) if volume >= target - 1e-12) for name, curve in curves.items()}
    seeds = config.calibration.schedules(config.space)
    seeded = {h: objectives for h, _, objectives in rows["seeded"]}
    projected = {name: config.space.decode(nearest_genome(config.space, s)) for name, s in seeds.items()}
    result = {
        "what": f"{args.config or 'the embedded default search'} on {model} with and without calibration seeds, "
        f"on {os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d')}; python experiments/calibration_seeds.py {' '.join(sys.argv[1:])}",
        "config": {**config.to_dict(), "calibration": {"seeds": True, "baselines": False, "thresholds": config.calibration.thresholds}},
        "calibration": {
            "fingerprint": calibration.fingerprint,
            "loop_length": calibration.loop_length,
            "signals": {s: [round(float(v), 4) for v in calibration.mean(s)[1:]] for s in ("first_block", "output", "magnitude_ratio")},
            "seeds": {
                name: {"steps": strip(s), "projected": strip(projected[name]), "objectives": seeded.get(projected[name].hash)}
                for name, s in seeds.items()
            },
            "rules": {name: rule.label for name, rule in RULES.items()},
        },
        "objectives": list(config.objectives),
        "reference_point": reference,
        "validated_points": len(needed),
        "validation_images": settings.images,
        "evaluations": {name: len(curve) for name, curve in curves.items()},
        "hypervolume_per_evaluation": curves,
        "final_hypervolume": {name: curve[-1] for name, curve in curves.items()},
        "target_hypervolume": target,
        "evaluations_to_target": reached,
        "wall_s": wall | {"total": round(time.monotonic() - begun, 1)},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"evaluations to reach hypervolume {target:.4g}: {reached}; wrote {out}")


if __name__ == "__main__":
    main()
