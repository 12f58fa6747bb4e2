"""Measure a shipped shapes model: does it draw what its held-out captions ask for?

    python experiments/eval_shapes.py                      # the UNet, about 6 minutes on 2 CPU cores
    python experiments/eval_shapes.py --model shapes-dit   # the DiT

Generates one image per held-out caption (captions never seen in training) at the model's
default steps and guidance (the UNet: 50 PNDM steps, guidance 7.5, as SD 1.5 is usually run;
the DiT: SD3's flow-matching Euler sampler, see DEFAULTS), then reports
  - the judge's caption accuracy: main object's shape and colour both right (chance 1/18),
  - FID and KID of the generated images against rendered held-out images, in the judge's
    feature space (torch-fidelity's own code path, with the judge registered as its extractor),
  - the same for the judge on the rendered images themselves (its ceiling),
and writes experiments/results/shapes_model.json (shapes_dit_model.json) plus a sample grid for the model card.
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
from prunesched.models.shapes import DIT_NAME, MODELS, NAME, fingerprint
from prunesched.models.shapes.data import main_object, save_samples, scene
from prunesched.models.shapes.judge import HEADS, Judge, caption_matches, load_judge

ROOT = Path(__file__).resolve().parent
DEFAULTS = {
    NAME: {"steps": 50, "guidance": 7.5, "out": "shapes_model.json", "grid": "shapes-samples.png"},
    DIT_NAME: {"steps": 28, "guidance": 7.0, "out": "shapes_dit_model.json", "grid": "shapes-dit-samples.png"},
}
"""Per model: its default steps and guidance (the UNet's are SD 1.5's usual ones, the DiT's SD3's), and its outputs."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=MODELS, default=NAME)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--real", type=int, default=1000, help="rendered held-out images, the FID reference")
    parser.add_argument("--steps", type=int, help="default: the model's (DEFAULTS)")
    parser.add_argument("--guidance", type=float, help="default: the model's (DEFAULTS)")
    parser.add_argument("--work", type=Path, default=ROOT / ".work")
    parser.add_argument("--out", type=Path, help="default: experiments/results/, named per model")
    parser.add_argument("--grid", type=Path, help="default: docs/images/, named per model")
    args = parser.parse_args()
    defaults = DEFAULTS[args.model]
    args.steps = args.steps or defaults["steps"]
    args.guidance = args.guidance if args.guidance is not None else defaults["guidance"]
    args.out = args.out or ROOT / "results" / defaults["out"]
    args.grid = args.grid or ROOT.parent / "docs" / "images" / defaults["grid"]
    began = time.perf_counter()
    real = save_samples(args.work / "shapes-heldout-real", args.real)
    settings = PipelineSettings(
        model=args.model,
        images=args.images,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
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
        "model": fingerprint(args.model),
        "images": args.images,
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance,
        "caption_accuracy": generated["caption_accuracy"],
        **parts(judge, evaluation.full_images, captions),
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
    print(
        json.dumps(
            {k: result[k] for k in ("caption_accuracy", "shape_accuracy", "colour_accuracy", "fid_judge", "judge_accuracy_on_rendered")},
            indent=1,
        )
    )
    print(f"first captions: {captions[:4]}")


@torch.no_grad()
def parts(judge: Judge, images: torch.Tensor, captions: list[str]) -> dict[str, dict[str, float]]:
    """Caption accuracy's two halves: the share of images whose main object has the caption's shape, and its colour."""
    logits = judge.read(images)
    read = zip(logits["shape"].argmax(dim=1).tolist(), logits["colour"].argmax(dim=1).tolist())
    pairs = [((HEADS["shape"][s], HEADS["colour"][c]), main_object(caption)) for (s, c), caption in zip(read, captions)]
    return {
        "shape_accuracy": metric([float(got[0] == want[0]) for got, want in pairs]),
        "colour_accuracy": metric([float(got[1] == want[1]) for got, want in pairs]),
    }


def _grid(images: torch.Tensor, path: Path, columns: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tile(images, columns, scale=2).save(path)


if __name__ == "__main__":
    main()
