"""Measure the shipped shapes model: does it draw what its held-out captions ask for?

    python experiments/eval_shapes.py        # about 10 minutes on 2 CPU cores

Generates one image per held-out caption (captions never seen in training; 50 PNDM steps,
guidance 7.5, as SD 1.5 is usually run), then reports
  - the judge's caption accuracy: main object's shape and colour both right (chance 1/18),
  - FID and KID of the generated images against rendered held-out images, in the judge's
    feature space (torch-fidelity's own code path, with the judge registered as its extractor),
  - the same for the judge on the rendered images themselves (its ceiling),
and writes experiments/results/shapes_model.json plus a sample grid for the model card.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from prunesched.evaluation.evaluate import PipelineEvaluator
from prunesched.evaluation.generation import load_images, tile
from prunesched.evaluation.settings import PipelineSettings
from prunesched.evaluation.stats import metric
from prunesched.models.shapes import fingerprint
from prunesched.models.shapes.data import save_samples, scene
from prunesched.models.shapes.judge import caption_matches, load_judge

ROOT = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--real", type=int, default=1000, help="rendered held-out images, the FID reference")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--work", type=Path, default=ROOT / ".work")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "shapes_model.json")
    parser.add_argument("--grid", type=Path, default=ROOT.parent / "docs" / "images" / "shapes-samples.png")
    args = parser.parse_args()
    began = time.perf_counter()
    real = save_samples(args.work / "shapes-heldout-real", args.real)
    settings = PipelineSettings(
        images=args.images,
        num_inference_steps=args.steps,
        guidance_scale=7.5,
        reference=str(real),
        repeats=1,
        batch_size=25,
        cache_dir=str(args.work / "cache"),
    )
    evaluation = PipelineEvaluator(settings)
    generated = evaluation.quality(evaluation.full_images)
    captions = list(evaluation.generator.spec.prompts)
    rendered = load_images(real, args.real)
    assert rendered is not None
    judge = load_judge()
    ceiling = caption_matches(judge, rendered, [scene(i, "heldout")[0].caption for i in range(args.real)])
    result = {
        "model": fingerprint(),
        "images": args.images,
        "num_inference_steps": args.steps,
        "guidance_scale": 7.5,
        "caption_accuracy": generated["caption_accuracy"],
        "fid_judge": generated["fid"],
        "kid_judge": generated["kid"],
        "judge_accuracy_on_rendered": metric([float(m) for m in ceiling]),
        "reference_images": args.real,
        "wall_s": time.perf_counter() - began,
        "device": evaluation.device,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    _grid(evaluation.full_images[:32], args.grid)
    print(json.dumps({k: result[k] for k in ("caption_accuracy", "fid_judge", "judge_accuracy_on_rendered")}, indent=1))
    print(f"first captions: {captions[:4]}")


def _grid(images: torch.Tensor, path: Path, columns: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tile(images, columns, scale=2).save(path)


if __name__ == "__main__":
    main()
