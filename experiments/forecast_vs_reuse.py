"""Does a forecast step beat a copy at the same cost? Cache and reuse schedules at forecast orders 0, 1 and 2.

    python experiments/forecast_vs_reuse.py                      # the shipped UNet: about 10 minutes on 2 idle CPU cores
    python experiments/forecast_vs_reuse.py --model shapes-dit   # the shapes DiT, where depth 0 is its first and last block

Rows: a full step every N iterations and between them depth 0 (N = 2, 3, 4: a UNet's DeepCache
branch 0, a DiT's block cache of its first and last block) or reuse steps (N = 2, 3), each at
forecast order 0 (a copy: DeepCache, DaTo's 0), 1 and 2 (the cached features, or the output, extrapolated
from the last full steps). An extrapolation costs what the copy costs in MACs (the cost model prices
it so), so the three orders of a row group run at one cost. Quality is paired with the full model's
images of the same 16 held-out captions and seeds: PSNR and, on the shapes models, the judge's
caption accuracy; at the pipeline's own default steps and guidance. The rows run through
``experiments/run.py``'s table machinery (:class:`prunesched.evaluation.evaluate.PipelineEvaluator`).
Images differ far more from each other than schedules do, so each order is also compared with the
copy image by image: the mean PSNR gain with its bootstrap interval, and how many images it improves.

Writes experiments/results/forecast_vs_reuse_MODEL.json and, beside it, a Markdown file with one
line per cost (the orders side by side) above the table of every row; ``--render`` rewrites both
from the JSON and the kept images, without generating anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from run import markdown, run_table

from prunesched.errors import ConfigError, PruneschedError
from prunesched.evaluation import paired
from prunesched.evaluation.generation import load_images
from prunesched.evaluation.stats import metric
from prunesched.models.loading import pipeline_defaults
from prunesched.runtime.schedule import FORECAST_ORDERS, cache_label

ROOT = Path(__file__).resolve().parent
PLANS: dict[int | str, tuple[int, ...]] = {0: (2, 3, 4), "reuse": (2, 3)}
"""What runs between the full steps, and at which intervals N (a full step every N iterations)."""
QUALITY = ("psnr", "caption_accuracy", "feature_distance")
"""Quality columns of the summary, where the evaluation gives them (the judge and its features: shapes models only)."""


def rows() -> list[dict[str, Any]]:
    """The table's rows: every plan and interval at every forecast order, the orders of one cost next to each other."""
    return [
        {
            "label": f"N={n}, {cache_label(cache, order) if order else cache_label(cache) + ' (copy)'}",
            "family": cache_label(cache, order),
            "schedule": {"kind": "deepcache", "interval": n, "branch": cache, "forecast": order},
        }
        for cache, intervals in PLANS.items()
        for n in intervals
        for order in FORECAST_ORDERS
    ]


def groups(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The rows of each plan and interval, one per forecast order (as :func:`rows` lays them out)."""
    orders = len(FORECAST_ORDERS)
    return [rows[start : start + orders] for start in range(0, len(rows), orders)]


def psnr_gains(report: dict[str, Any]) -> None:
    """Add to every forecast row its per-image PSNR minus the copy's (same captions and seeds), from the kept images:
    ``psnr_gain`` (the mean, with its bootstrap interval over images) and ``images_improved``."""
    measured = report["measured_with"]
    folder, count = Path(measured["images_folder"]), measured["settings"]["images"]

    def kept(name: str) -> torch.Tensor:
        images = load_images(folder / name, count)
        if images is None:
            raise ConfigError(f"the {count} images of {name!r} are not in {folder}; run without --render to generate them")
        return images

    full = kept("full")
    for group in groups(report["rows"]):
        copy, *forecasts = [paired.psnr(kept(row["schedule_hash"][:16]), full) for row in group]
        for row, psnr in zip(group[1:], forecasts):
            row["psnr_gain"] = metric(psnr - copy)
            row["images_improved"] = int(np.sum(psnr > copy))


def summary(report: dict[str, Any]) -> str:
    """One line per plan and interval: its relative MACs, each quality metric at forecast orders 0, 1, 2, and each
    forecast order's paired PSNR gain over the copy."""
    measured, count = report["rows"], report["measured_with"]["settings"]["images"]
    metrics = [m for m in QUALITY if all(m in r["metrics"] for r in measured)]
    names = ["between full steps", "relative MACs", *(f"{m} f{k}" for m in metrics for k in FORECAST_ORDERS)]
    names += [f"PSNR gain f{k} (images better)" for k in FORECAST_ORDERS[1:]]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for group in groups(measured):
        cells = [group[0]["label"].removesuffix(" (copy)"), f"{group[0]['metrics']['relative_macs']['value']:.3f}"]
        cells += [f"{r['metrics'][m]['value']:.3g}" for m in metrics for r in group]
        for row in group[1:]:
            gain = row["psnr_gain"]
            cells.append(f"{gain['value']:+.2f} [{gain['ci'][0]:+.2f}, {gain['ci'][1]:+.2f}] ({row['images_improved']}/{count})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def measure(model: str, images: int, steps: int | None, out: Path) -> dict[str, Any]:
    """Evaluate every row on ``model`` and write the table's JSON to ``out`` (see the module)."""
    default_steps, guidance = pipeline_defaults(model)
    evaluator = {
        "model": model,
        "prompts": {"kind": "shapes"},
        "images": images,
        "batch_size": min(images, 16),
        "num_inference_steps": steps or default_steps,
        "guidance_scale": guidance,
        "cost": ["macs"],
        "repeats": 1,
    }
    setting = f"{images} held-out captions, {evaluator['num_inference_steps']} steps, guidance {guidance:g}"
    title = f"Forecast against copy at the same cost on {model} ({setting})"
    config = {"title": title, "paper": "TaylorSeer / FoCa-style forecasting; no paper numbers for this model", "evaluator": evaluator}
    return run_table({**config, "rows": rows()}, out, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shapes", help="a built-in model (shapes, shapes-dit, tiny-sd, ...) or a diffusers folder")
    parser.add_argument("--images", type=int, default=16, help="held-out captions, one image each [default: 16]")
    parser.add_argument("--steps", type=int, help="num_inference_steps [default: the pipeline's own]")
    parser.add_argument("--out", type=Path, help="result JSON [default: experiments/results/forecast_vs_reuse_MODEL.json]")
    parser.add_argument("--render", action="store_true", help="rewrite the JSON's gains and the Markdown from --out and the kept images")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "results" / f"forecast_vs_reuse_{Path(args.model).name}.json"
    try:
        report = json.loads(out.read_text()) if args.render else measure(args.model, args.images, args.steps, out)
        psnr_gains(report)
    except PruneschedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    table = f"{report['title']}\n\n{summary(report)}\n\nEvery row:\n\n{markdown(report['rows'])}\n"
    out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
