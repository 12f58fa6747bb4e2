"""Does a quality objective rank schedules the way image quality does, and does it rank them the same twice?

    python experiments/objective_validity.py              # 80 minutes on 2 CPU cores
    python experiments/objective_validity.py --reuse-large OLD.json   # 6 minutes: the large set's values taken from OLD.json

On the shipped shapes model, at the embedded default search's setting, for >= 30 schedules that span
the search space (DeepCache intervals 2-5 at branches 0 and 1, uniform pruning per method, random
DaTo-space schedules, DaTo's Ours-b1 resampled), each schedule is evaluated three times with the
same code a search runs (:class:`prunesched.evaluation.evaluate.PipelineEvaluator`):
  - ``first``: the search's sample (``--images``, seed 0), the objectives as a search sees them;
  - ``second``: as many images on disjoint seeds, for repeatability;
  - ``large``: ``--large`` further images on disjoint seeds, the independent quality measure
    (the judge's caption accuracy and paired PSNR).
For each objective (the paired feature distance's geometric and arithmetic mean over images, FID
and KID to the full model's images, MSE) it reports the Spearman correlation between ``first`` and
``second`` (repeatability), between ``first`` and each large-n quality measure, signed so that 1
means "a better objective value goes with better images" (validity), and how often it ranks a
broken schedule (caption accuracy below the full model's lower bound on the large set) worse than
a sound one. For the paired objectives it keeps every image's value of ``first`` and ``second``,
and compares summary statistics over them (mean, median, geometric mean): a few images whose
object changed outright can dominate a mean of 16. Writes experiments/results/objective_validity.json
with every schedule's values; ``--render`` recomputes the summary from them and prints the docs
table; ``--reuse-large`` takes the large-set values from an earlier file (they do not depend on
the other two runs), so a change to ``first`` and ``second`` costs a seventh of the study.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from prunesched.evaluation import paired
from prunesched.evaluation.evaluate import PipelineEvaluator
from prunesched.evaluation.settings import PipelineSettings
from prunesched.evaluation.stats import geometric_mean
from prunesched.runtime.paper_tables import dato_ours_b1
from prunesched.runtime.schedule import Schedule
from prunesched.search.config import SearchConfig
from prunesched.search.spaces import DatoSpace

ROOT = Path(__file__).resolve().parent
OBJECTIVES = ("feature_distance_gmean", "feature_distance", "fid", "kid", "mse")
"""Lower is better for each."""
QUALITY = {"caption_accuracy": 1, "psnr": 1}
"""The large-n quality measures; higher is better for both."""
STATISTICS = {
    "mean": np.mean,
    "median": np.median,
    "geometric mean": geometric_mean,
}
"""Summaries of a paired objective's per-image values (``feature_distance_gmean`` is the feature distance's geometric mean)."""
PAIRED = ("feature_distance", "mse")
"""The objectives whose per-image values are kept."""


def schedules(steps: int, random_count: int, seed: int) -> dict[str, Schedule]:
    """The schedules of the study, by name, each ``steps`` loop iterations long."""
    out = {f"DeepCache N={n} branch {b}": Schedule.deepcache(steps, n, b, method="dato") for b in (0, 1) for n in (2, 3, 4, 5)}
    for method in ("dato", "sito", "random"):
        for ratio in (0.3, 0.5, 0.7):
            out[f"{method} uniform {ratio}"] = Schedule.uniform(steps, "full", ratio, method=method)
    out["DaTo Ours-b1"] = dato_ours_b1().resample(steps)
    space = SearchConfig.default().space
    assert isinstance(space, DatoSpace)
    rng = np.random.default_rng(seed)
    for i, genome in enumerate(DatoSpace(steps=steps, caches=space.caches, ratios=space.ratios).random(rng, random_count)):
        out[f"random dato-space {i}"] = DatoSpace(steps=steps, caches=space.caches, ratios=space.ratios).decode(genome)
    return out


def signed_spearman(x: list[float], y: list[float], sign: int) -> float:
    """Spearman's rank correlation of ``x`` and ``sign * y``."""
    return float(spearmanr(x, [sign * v for v in y]).statistic)


def per_image(evaluator: PipelineEvaluator, images: torch.Tensor) -> dict[str, list[float]]:
    """The paired objectives' value on each image, for :data:`STATISTICS` other than the mean."""
    assert evaluator.fidelity is not None and evaluator.full_features is not None
    n = len(images)
    distances = evaluator.fidelity.feature_distance(evaluator.fidelity.features(images), evaluator.full_features[:n])
    return {"feature_distance": distances.tolist(), "mse": paired.mse(images, evaluator.full_images[:n]).tolist()}


def summarize(rows: list[dict], full: dict) -> dict:
    """Per objective, and per summary statistic of each paired objective's per-image values where they were kept:
    repeatability, validity against each large-n measure, and how well it ranks the broken schedules (caption
    accuracy on the large set below the full model's 95 % lower bound, what the default guardrail refuses) below
    the sound ones: the share of (broken, sound) pairs it orders so (1: all, 0.5: chance)."""
    floor = full["caption_accuracy"]["ci"][0]
    broken = [row["large"]["caption_accuracy"]["value"] < floor for row in rows]

    def values(run: str, metric: str, statistic: Callable[[np.ndarray], float] | None = None) -> list[float]:
        if statistic is None:
            return [row[run][metric]["value"] for row in rows]
        return [float(statistic(np.asarray(row[run][metric]["per_image"]))) for row in rows]

    def measures(first: list[float], second: list[float]) -> dict[str, float]:
        pairs = [(b, s) for b, bad in zip(first, broken) if bad for s, ok in zip(first, broken) if not ok]
        return {
            "repeatability": signed_spearman(first, second, 1),
            **{f"validity_{q}": signed_spearman(first, values("large", q), -sign) for q, sign in QUALITY.items()},
            "broken_ranked_worse": sum(b > s for b, s in pairs) / len(pairs) if pairs else float("nan"),
        }

    kept = all("per_image" in row["first"]["feature_distance"] for row in rows)
    return {
        "broken": sum(broken),
        "caption_accuracy_floor": floor,
        "objectives": {o: measures(values("first", o), values("second", o)) for o in OBJECTIVES},
        "statistics": {
            f"{o} {name}": measures(values("first", o, statistic), values("second", o, statistic))
            for o in PAIRED
            for name, statistic in STATISTICS.items()
        }
        if kept
        else {},
    }


def markdown(result: dict) -> str:
    """The summary as the table of docs/evaluation.md."""
    summary = summarize(result["schedules"], result["full_model_large"])
    lines = [
        "| objective (on the search's 16 images) | repeatability | validity: paired PSNR | validity: caption accuracy "
        f"| broken ranked worse ({summary['broken']} broken) |",
        "|---|---|---|---|---|",
    ]
    for name, row in summary["objectives"].items():
        values = (row["repeatability"], row["validity_psnr"], row["validity_caption_accuracy"], row["broken_ranked_worse"])
        lines.append(f"| `{name}` | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    if summary["statistics"]:
        lines += [
            "",
            "| per-image values summarised by | repeatability | validity: paired PSNR | validity: caption accuracy | broken ranked worse |",
        ]
        lines.append("|---|---|---|---|---|")
        for name, row in summary["statistics"].items():
            values = (row["repeatability"], row["validity_psnr"], row["validity_caption_accuracy"], row["broken_ranked_worse"])
            lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16, help="images per evaluation as a search runs it")
    parser.add_argument("--large", type=int, default=200, help="images of the independent quality measure")
    parser.add_argument("--steps", type=int, default=None, help="num_inference_steps [default: the embedded default search's]")
    parser.add_argument("--random", type=int, default=13, help="random DaTo-space schedules")
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument("--limit", type=int, default=None, help="only the first N schedules (a toy run)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "objective_validity.json")
    parser.add_argument("--render", action="store_true", help="only print the table of an existing --out")
    parser.add_argument("--reuse-large", type=Path, default=None, help="take the large-set values from this earlier result")
    args = parser.parse_args()
    if args.render:  # the summary again from the stored per-schedule values, into the file and as the docs table
        result = json.loads(args.out.read_text())
        result["summary"] = summarize(result["schedules"], result["full_model_large"])
        args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
        print(markdown(result))
        return
    began = time.perf_counter()
    default = SearchConfig.default().evaluator
    assert isinstance(default, PipelineSettings)
    steps = args.steps or default.num_inference_steps
    common = {"num_inference_steps": steps, "guidance_scale": default.guidance_scale, "batch_size": args.batch_size, "keep_images": False}
    runs = {
        "first": PipelineSettings(images=args.images, seed=0, reference="model", **common),
        "second": PipelineSettings(images=args.images, seed=10_000, reference="model", **common),
        "large": PipelineSettings(images=args.large, seed=20_000, **common),
    }
    earlier = json.loads(args.reuse_large.read_text()) if args.reuse_large else None
    stored = {name: {k: v for k, v in vars(s).items() if k != "prompts"} for name, s in runs.items()}
    if earlier is not None:  # a setting added since the earlier run was measured at its default
        defaults = json.loads(json.dumps({f.name: f.default for f in fields(PipelineSettings)}, default=str))
        wanted = json.loads(json.dumps(stored["large"], default=str))
        if any(earlier["settings"]["large"].get(key, defaults[key]) != value for key, value in wanted.items()):
            parser.error(f"--reuse-large {args.reuse_large}: its large set was measured with other settings")
    evaluators = {name: PipelineEvaluator(settings) for name, settings in runs.items() if not (earlier and name == "large")}
    loop = evaluators["first"].steps
    studied = list(schedules(loop, args.random, seed=1).items())[: args.limit]
    large = {}
    if earlier is not None:  # the earlier values of each schedule, looked up before an hour is spent
        measured = {json.dumps(old["schedule"], sort_keys=True): old["large"] for old in earlier["schedules"]}
        large = {name: measured.get(json.dumps(json.loads(json.dumps(s.to_dict())), sort_keys=True)) for name, s in studied}
        if None in large.values():
            parser.error(f"--reuse-large {args.reuse_large}: it has no values for {[n for n, v in large.items() if v is None]}")
    rows = []
    for name, schedule in studied:
        row = {"name": name, "schedule": schedule.to_dict()}
        for run, evaluator in evaluators.items():
            images = evaluator.generator.images(schedule)
            row[run] = evaluator.quality(images)
            if run != "large":
                for objective, values in per_image(evaluator, images).items():
                    row[run][objective]["per_image"] = values
        if earlier is not None:
            row["large"] = large[name]
        rows.append(row)
        print(f"{name}: " + ", ".join(f"{o} {row['first'][o]['value']:.4g}" for o in OBJECTIVES), flush=True)
    full = earlier["full_model_large"] if earlier else evaluators["large"].quality(evaluators["large"].full_images)
    result = {
        "title": f"Quality objectives against large-n image quality on the shapes model ({steps} PNDM steps, {len(rows)} schedules)",
        "settings": stored,
        "loop_length": loop,
        "full_model_large": {q: full[q] for q in QUALITY},
        "summary": summarize(rows, full),
        "schedules": rows,
        "wall_s": time.perf_counter() - began,
        "large_reused": earlier is not None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
