"""Render experiments/results/bench_step_cpu.json (or a ``--compile`` run's JSON) as the Markdown tables of docs/benchmarks.md.

Usage: python experiments/bench_step_table.py experiments/results/bench_step_cpu.json
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    with open(path, encoding="utf-8") as file:
        result = json.load(file)
    steps, peers, meta = result["steps"], result["peers"], result["meta"]
    print(
        f"Measured {meta['date']} on {meta['device']} ({meta['cpu_threads']} threads), {meta['dtype']}, "
        f"latent {meta['config']['latent']}x{meta['config']['latent']}, batch {meta['config']['batch']}, "
        f"attention {', '.join(meta['attention_processors'])}, timer {meta['timer']}, "
        f"median of {meta['config']['repeats']} repeats; torch {meta['torch']}, diffusers {meta['diffusers']}.\n"
    )
    print(
        f"Full step: median {steps['full']['median_s']:.2f} s over {len(steps['full']['repeats_s'])} reference steps "
        f"(range {min(steps['full']['repeats_s']):.2f}-{max(steps['full']['repeats_s']):.2f} s). "
        "'x full' is the median over pairs of (step / the full step timed just before it).\n"
    )
    print("| step | ours: s | ours: x full | token selection, share of step | peer | peer: x full |")
    print("|---|---|---|---|---|---|")
    for b in meta["config"]["branches"]:
        ours, theirs = steps[f"branch{b}"], peers.get(f"deepcache/branch{b}")
        peer = f"DeepCache | {theirs['relative_to_full']:.3f}" if theirs else " | "
        print(f"| cache branch {b} | {ours['median_s']:.3f} | {ours['relative_to_full']:.3f} | | {peer} |")
    print(f"| reuse | {steps['reuse']['median_s'] * 1000:.1f} ms | {steps['reuse']['relative_to_full']:.4f} | | | |")
    for ratio in meta["config"]["ratios"]:
        tome = peers.get(f"tomesd@{ratio}")
        for method in meta["config"]["methods"]:
            ours = steps[f"{method}@{ratio}"]
            peer = f"tomesd | {tome['relative_to_full']:.3f}" if tome and method == meta["config"]["methods"][0] else " | "
            print(
                f"| {method} {ratio} | {ours['median_s']:.2f} | {ours['relative_to_full']:.3f} | "
                f"{ours['selection_share_of_step']:.1%} | {peer} |"
            )
    for ratio in meta["config"]["ratios"]:
        key = f"dato@{ratio}/branch0"
        if key in steps:
            print(
                f"| dato {ratio}, branch 0 | {steps[key]['median_s']:.3f} | {steps[key]['relative_to_full']:.3f} | "
                f"{steps[key].get('selection_share_of_step', 0):.1%} | | |"
            )
    print("\n| goal | measured | target | met |")
    print("|---|---|---|---|")
    for name, goal in result["goals"].items():
        print(f"| {name} | {goal['value']:.3f} | {goal['goal']} | {'yes' if goal['met'] else '**no**'} |")
    if "compiled" in result:
        compiled_table(result)
    table6 = result.get("dato_table6", {})
    if "end_to_end_at_latent" in table6:
        e2e = table6["end_to_end_at_latent"]
        print(
            f'\nDaTo Table 6 "Ours-b1" (51 PNDM iterations): composed from the step costs above, '
            f"{table6['composed_at_latent']['predicted_speedup']:.2f}x over all-full steps at latent "
            f"{table6['composed_at_latent']['latent']}; at latent {e2e['latent']}, composed {e2e['predicted_speedup']:.2f}x "
            f"and measured end to end {e2e['measured_speedup']:.2f}x ({e2e['measured_s']:.1f} s vs "
            f"{e2e['measured_all_full_s']:.1f} s of UNet time)."
        )


def compiled_table(result: dict) -> None:
    """The cache steps eager and with the UNet compiled: seconds, each relative to its own full step, compiled over
    eager in neighbouring rounds, and each side's first round (the compiled one compiles)."""
    eager, compiled = result["steps"], result["compiled"]
    backend = compiled["backend"]
    print(f"\n| step | eager: s | eager: x full | {backend}: s | {backend}: x full | {backend} / eager |")
    print("|---|---|---|---|---|---|")
    for name in ["full", *(f"branch{b}" for b in result["meta"]["config"]["branches"]), "reuse"]:
        a, b = eager[name], compiled["steps"][name]
        over = f"{compiled['over_eager'][name]:.2f}" if name in compiled["over_eager"] else ""
        sides = f"{a['median_s']:.3f} | {a['relative_to_full']:.3f} | {b['median_s']:.3f} | {b['relative_to_full']:.3f}"
        print(f"| {name} | {sides} | {over} |")
    for side, rounds in (("eager", result["first_round_s"]), (backend, compiled["first_round_s"])):
        print(f"\nFirst round, {side}: " + ", ".join(f"{r['plan']} {r['s']:.1f} s" for r in rounds) + ".")


if __name__ == "__main__":
    main(sys.argv[1])
