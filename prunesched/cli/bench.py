"""``prunesched bench``: benchmarks that write JSON."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group()
def bench() -> None:
    """Benchmarks that write JSON."""


def _floats(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers like 0.3,0.5, got {value!r}") from None


@bench.command("step")
@click.option("--latent", default=64, show_default=True, help="Latent side (64 = 512x512 images on SD 1.5).")
@click.option("--batch", default=2, show_default=True, help="UNet batch (2 = one image with CFG).")
@click.option("--repeats", default=3, show_default=True, help="Timed [full, step] pairs per configuration (medians reported).")
@click.option("--ratios", default="0.3,0.4,0.5,0.6,0.7", show_default=True, callback=_floats, help="Prune ratios.")
@click.option("--e2e-latent", default=32, show_default=True, help="Latent side of the end-to-end DaTo Table 6 run (0 skips it).")
@click.option("--device", default="auto", show_default=True, help="auto: CUDA (fp16) when available, else CPU (fp32).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("bench_step.json"), show_default=True)
def bench_step(latent: int, batch: int, repeats: int, ratios: tuple[float, ...], e2e_latent: int, device: str, output: Path) -> None:
    """Per-step latency of full, cache and reuse steps and of each pruning method, next to tomesd and DeepCache, on the SD 1.5 UNet."""
    from prunesched.bench.step import StepBenchConfig, run_step_bench

    for name, value in (("--latent", latent), ("--batch", batch), ("--repeats", repeats)):
        if value < 1:
            raise click.BadParameter(f"must be >= 1, got {value}", param_hint=name)
    config = StepBenchConfig(latent=latent, batch=batch, repeats=repeats, ratios=ratios, e2e_latent=e2e_latent, device=device)
    result = run_step_bench(config, log=lambda message: click.echo(message, err=True))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, goal in result["goals"].items():
        click.echo(f"{'met ' if goal['met'] else 'MISS'}  {name}: {goal['value']:.3f} (goal {goal['goal']})")
    click.echo(f"wrote {output}")


@bench.command("atedm")
@click.option("--latent", default=128, show_default=True, help="Latent side of the MAC count (128 = 1024x1024 on SDXL; counted on the meta device).")
@click.option("--batch", default=2, show_default=True, help="UNet batch (2 = one image with CFG).")
@click.option("--ratio", default=0.63, show_default=True, help="AT-EDM's prune ratio rho (the paper's 4.1 T budget).")
@click.option("--steps", default=50, show_default=True, help="Denoising steps the per-step average is over.")
@click.option("--tau", default=15, show_default=True, help="DSAP's prune-less first steps.")
@click.option("--iterations", default=10, show_default=True, help="G-WPR iterations (a fixed count).")
@click.option("--latency-latent", default=32, show_default=True, help="Latent side of the timed runs (0 skips timing; the CPU handles 32, a GPU 128).")
@click.option("--repeats", default=3, show_default=True, help="Timed [full, step] pairs per step kind.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("bench_atedm.json"), show_default=True)
def bench_atedm(output: Path, **options: float) -> None:
    """AT-EDM's MACs and latency per step on the SDXL UNet at the paper's budget (rho 63 %, DSAP 15 of 50 steps)."""
    from prunesched.bench.atedm import AtedmBenchConfig, run_atedm_bench

    for name in ("latent", "batch", "steps", "iterations", "repeats"):
        if options[name] < 1:
            raise click.BadParameter(f"must be >= 1, got {options[name]}", param_hint=f"--{name}")
    result = run_atedm_bench(AtedmBenchConfig(**options), log=lambda message: click.echo(message, err=True))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    macs, dsap = result["macs_per_call"], result["dsap"]
    click.echo(f"MACs per step: full {macs['full'] / 1e12:.2f} T, AT-EDM {macs['atedm'] / 1e12:.2f} T ({result['mac_reduction']:.1%} fewer; "
               f"paper {result['paper_reduction']:.1%}); with DSAP {dsap['mac_reduction_at_the_same_ratio']:.1%} fewer at the same ratio, "
               f"the same budget at ratio {dsap['ratio_for_the_same_budget']:.3f}")  # fmt: skip
    for name, goal in result["goals"].items():
        click.echo(f"{'met ' if goal['met'] else 'MISS'}  {name}: {goal['value']:.3f} (goal {goal['goal']})")
    click.echo(f"wrote {output}")
