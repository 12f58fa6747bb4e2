"""How often does G-WPR with a fixed number of iterations keep the same tokens as G-WPR run to convergence?

    python experiments/gwpr_agreement.py        # about 2 minutes on 2 CPU cores

AT-EDM's Algorithm 1 iterates until the scores stop changing, which needs a host synchronisation
per iteration; a fixed count does not (SiTo's criticism of AT-EDM). On real attention maps (the
shipped shapes model's highest-resolution self-attention, 1,024 tokens, held-out captions, 50 PNDM
steps, guidance 7.5, every fifth step, both CFG halves) this compares the kept set of a fixed
count with the converged one at prune ratios 0.3, 0.5 and 0.7: the share of maps whose kept sets
are identical, and the mean share of the converged kept set that the fixed count also keeps.

Writes experiments/results/gwpr_agreement.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from prunesched.models.shapes import pipeline
from prunesched.models.shapes.data import scene
from prunesched.runtime.tokens.atedm import attention_map, combine_heads, gwpr
from prunesched.runtime.unet_layout import all_slots

ROOT = Path(__file__).resolve().parent
ITERATIONS = (1, 2, 3, 5, 10, 20)
RATIOS = (0.3, 0.5, 0.7)


def capture(prompts: list[str], steps: int, every: int) -> list[torch.Tensor]:
    """The self-attention maps ``(B, H, N, N)`` of the highest-resolution slots at every ``every``-th loop iteration."""
    pipe = pipeline()
    slots = [s for s in all_slots(pipe.unet) if s.level == 0]
    maps, calls = [], {"n": 0}

    def hook(attn, args):
        if (calls["n"] // len(slots)) % every == 0:
            x = args[0]
            q, k = (proj(x).view(x.shape[0], x.shape[1], attn.heads, -1).transpose(1, 2) for proj in (attn.to_q, attn.to_k))
            maps.append(torch.stack([attention_map(q[:, h], k[:, h], attn.scale) for h in range(attn.heads)], dim=1))
        calls["n"] += 1

    hooks = [s.block.attn1.register_forward_pre_hook(hook) for s in slots]
    with torch.no_grad():
        pipe(prompts, num_inference_steps=steps, guidance_scale=7.5, generator=torch.Generator().manual_seed(0), output_type="np")
    for h in hooks:
        h.remove()
    return maps


def agreement(maps: list[torch.Tensor], epsilon: float) -> dict:
    """Per fixed iteration count and ratio: share of maps with identical kept sets, and mean overlap with the converged set."""
    out: dict = {str(n): {} for n in ITERATIONS}
    converged = [combine_heads(gwpr(m, "self", None, epsilon)) for m in maps]
    for n in ITERATIONS:
        fixed = [combine_heads(gwpr(m, "self", n)) for m in maps]
        for ratio in RATIOS:
            same, overlap, count = 0, 0.0, 0
            for a, b in zip(fixed, converged):
                keep = a.shape[1] - int(ratio * a.shape[1])
                for row_a, row_b in zip(a, b):
                    kept_a, kept_b = set(row_a.topk(keep).indices.tolist()), set(row_b.topk(keep).indices.tolist())
                    same += kept_a == kept_b
                    overlap += len(kept_a & kept_b) / keep
                    count += 1
            out[str(n)][str(ratio)] = {"identical": same / count, "overlap": overlap / count, "maps": count}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--epsilon", type=float, default=1e-6)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gwpr_agreement.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    began = time.perf_counter()
    prompts = [scene(i, "heldout")[0].caption for i in range(args.captions)]
    maps = capture(prompts, args.steps, args.every)
    result = {
        "model": "shapes",
        "captions": args.captions,
        "steps": args.steps,
        "every": args.every,
        "epsilon": args.epsilon,
        "tokens": maps[0].shape[-1],
        "agreement": agreement(maps, args.epsilon),
        "wall_s": time.perf_counter() - began,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for n, row in result["agreement"].items():
        print(
            f"{n:>3} iterations: " + "  ".join(f"r={r}: identical {v['identical']:.2f}, overlap {v['overlap']:.4f}" for r, v in row.items())
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
