"""Run the search benchmark (prunesched.bench.search) with its full-run defaults and write the JSON result.

Usage: python experiments/bench_search.py [--output experiments/results/bench_search_cpu.json] [--time-limit SECONDS]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from prunesched.bench.search import SearchBenchConfig, run_search_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("experiments/results/bench_search_cpu.json"))
    parser.add_argument(
        "--time-limit", type=float, default=SearchBenchConfig.time_limit_s, help="seconds after which a front run stops (TPE slows down)"
    )
    args = parser.parse_args()
    config = SearchBenchConfig(time_limit_s=args.time_limit)
    result = run_search_bench(config, log=lambda message: print(message, file=sys.stderr, flush=True))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, goal in result["goals"].items():
        print(f"{name}: {goal['value']:.3f} (goal {goal['goal']}): {'met' if goal['met'] else 'NOT met'}")
    fronts = result["fronts"]
    for name, entry in fronts["proposers"].items():
        fractions = ", ".join(f"{k}: {'-' if v is None else f'{v:.3f}'}" for k, v in entry["fraction_of_optimum_at"].items())
        capped = " (budget capped by the time limit)" if entry["budget_capped"] else ""
        print(f"{name}: hypervolume as a fraction of the exact front's at {fractions}{capped}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
