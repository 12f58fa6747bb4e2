"""Run the evaluation benchmark (prunesched.bench.evaluation) and write the JSON result.

Usage: python experiments/bench_eval.py [--inception-weights PATH] [-o experiments/results/bench_eval_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from prunesched.bench.evaluation import EvalBenchConfig, run_eval_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inception-weights", default=None, help="the real Inception weight file (default: a random-init stand-in)")
    parser.add_argument("-o", "--output", type=Path, default=Path("experiments/results/bench_eval_cpu.json"))
    args = parser.parse_args()
    result = run_eval_bench(EvalBenchConfig(inception_weights=args.inception_weights), log=lambda m: print(m, file=sys.stderr, flush=True))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, goal in result["goals"].items():
        print(f"{name}: {goal['value']:.3f} (goal {goal['goal']}): {'met' if goal['met'] else 'NOT met'}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
