"""Quality against speed on the shipped shapes model: SiTo, DaTo, random pruning and DeepCache-style caching.

    python experiments/compare_shapes.py      # about 75 minutes on 2 CPU cores (--images 16 --repeats 2: about 45)

Every schedule runs the same held-out captions and seeds (50 PNDM steps, guidance 7.5, as SD 1.5
is run in the papers). Quality: FID and KID to the full model's images in the judge's feature
space, the judge's caption accuracy, PSNR to the full model. Cost: MACs from the per-step cost
model (exact, so methods can be matched on it) and the measured loop latency (median of paired
runs). Two ablations ask whether the papers' distinguishing ideas matter here: SiTo without its
noise term, and DaTo without its DiffScore (diff_weight = 0, i.e. SiTo's similarity score with
DaTo's CFG alignment).

Writes experiments/results/compare_shapes.json and docs/images/compare_shapes.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from prunesched.evaluation.evaluate import EvalSettings, Evaluation
from prunesched.models.shapes import fingerprint
from prunesched.runtime.methods import DatoConfig, RandomConfig, SitoConfig
from prunesched.runtime.paper_tables import dato_ours_b1
from prunesched.runtime.schedule import Schedule

ROOT = Path(__file__).resolve().parent
RATIOS = (0.3, 0.5, 0.7)
INTERVALS = (2, 3, 5)
METHODS = {
    "SiTo": SitoConfig(),
    "SiTo, no noise": SitoConfig(noise=0.0),
    "DaTo": DatoConfig(),
    "DaTo, no DiffScore": DatoConfig(diff_weight=0.0),
    "random": RandomConfig(),
}


def schedules(steps: int) -> list[tuple[str, float, Schedule]]:
    """(family, setting, schedule) for every point of the comparison."""
    out = [("DeepCache", float(n), Schedule.deepcache(steps, interval=n, branch=0)) for n in INTERVALS]
    out += [(family, r, Schedule.uniform(steps, prune=r, method=method)) for family, method in METHODS.items() for r in RATIOS]
    out.append(("DaTo Ours-b1 table", 0.0, dato_ours_b1()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / ".work")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "compare_shapes.json")
    parser.add_argument("--plot", type=Path, default=ROOT.parent / "docs" / "images" / "compare_shapes.png")
    args = parser.parse_args()
    settings = EvalSettings(
        images=args.images, num_inference_steps=args.steps, reference="model", cost=("measured", "macs"),
        repeats=args.repeats, batch_size=args.images, cache_dir=str(args.work / "cache"),
    )  # fmt: skip
    began = time.perf_counter()
    evaluation = Evaluation(settings)
    points = []
    for family, setting, schedule in schedules(evaluation.steps):
        if len(schedule) != evaluation.steps:
            schedule = schedule.resample(evaluation.steps)
        metrics = evaluation.evaluate(schedule)
        points.append({"family": family, "setting": setting, "schedule_hash": schedule.hash, "metrics": metrics})
        m = metrics
        print(f"{family:>20} {setting:4}: FID {m['fid']['value']:7.3f}  judge {m['caption_accuracy']['value']:.2f}  "
              f"PSNR {m['psnr']['value']:5.1f}  MACs {m['relative_macs']['value']:.3f}  latency {m['relative_latency']['value']:.3f}", flush=True)  # fmt: skip
    full = evaluation.quality(evaluation.full_images)["caption_accuracy"]
    result = {"model": fingerprint(), "measured_with": evaluation.describe(), "full_model_caption_accuracy": full,
              "points": points, "wall_s": time.perf_counter() - began}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    plot(points, full["value"], args.plot)
    print(f"wrote {args.out} and {args.plot}")


def plot(points: list[dict], full_accuracy: float, path: Path) -> None:
    """FID to the full model and caption accuracy against relative MACs and latency, one line per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    families = list(dict.fromkeys(p["family"] for p in points))
    panels = [("relative_macs", "fid", "FID to full model (judge features)"), ("relative_latency", "fid", "FID to full model (judge features)"),
              ("relative_macs", "caption_accuracy", "judge caption accuracy")]  # fmt: skip
    for ax, (x, y, label) in zip(axes, panels):
        for family in families:
            own = sorted((p for p in points if p["family"] == family), key=lambda p: p["metrics"][x]["value"])
            ax.plot([p["metrics"][x]["value"] for p in own], [p["metrics"][y]["value"] for p in own], "o-" if len(own) > 1 else "*",
                    label=family, markersize=8 if len(own) == 1 else 5)  # fmt: skip
        if y == "caption_accuracy":
            ax.axhline(full_accuracy, color="gray", linestyle="--", label="full model")
        ax.set_xlabel(x.replace("_", " ") + " (full model = 1)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
