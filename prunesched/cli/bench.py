"""``prunesched bench``: benchmarks that write JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


@click.group()
def bench() -> None:
    """Benchmarks that write JSON."""


def _floats(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers like 0.3,0.5, got {value!r}") from None


def _at_least_one(options: dict[str, float]) -> None:
    """Refuse a count option below 1, naming it (``{"latent": 0}`` -> ``--latent``)."""
    for name, value in options.items():
        if value < 1:
            raise click.BadParameter(f"must be >= 1, got {value}", param_hint=f"--{name}")


def _write(result: dict[str, Any], output: Path) -> None:
    """Write ``result`` as JSON to ``output`` (:func:`~prunesched.storage.outputs.write_output`)."""
    from prunesched.storage.outputs import write_output

    output.parent.mkdir(parents=True, exist_ok=True)
    write_output(output, (json.dumps(result, indent=2) + "\n").encode("utf-8"), None)


def _report(result: dict[str, Any], output: Path, summary: str = "") -> None:
    """Write ``result`` as JSON to ``output`` (:func:`_write`), then print ``summary``, every goal with whether it is met, and the path."""
    _write(result, output)
    if summary:
        click.echo(summary)
    for name, goal in result["goals"].items():
        click.echo(f"{'met ' if goal['met'] else 'MISS'}  {name}: {goal['value']:.3f} (goal {goal['goal']})")
    click.echo(f"wrote {output}")


@bench.command("step")
@click.option("--latent", default=64, show_default=True, help="Latent side (64 = 512x512 images on SD 1.5).")
@click.option("--batch", default=2, show_default=True, help="UNet batch (2 = one image with CFG).")
@click.option("--repeats", default=3, show_default=True, help="Timed [full, step] pairs per configuration (medians reported).")
@click.option("--ratios", default="0.3,0.4,0.5,0.6,0.7", show_default=True, callback=_floats, help="Prune ratios.")
@click.option("--e2e-latent", default=32, show_default=True, help="Latent side of the end-to-end DaTo Table 6 run (0 skips it).")
@click.option("--device", default="auto", show_default=True, help="auto: CUDA (fp16) when available, else CPU (fp32).")
@click.option(
    "--compile",
    "compile_backend",
    default="",
    metavar="BACKEND",
    help="Time the full, cache and reuse steps eagerly and with the UNet compiled by this torch.compile backend (inductor); "
    "no pruning steps, peers or Table 6 check.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("bench_step.json"), show_default=True)
def bench_step(
    latent: int, batch: int, repeats: int, ratios: tuple[float, ...], e2e_latent: int, device: str, compile_backend: str, output: Path
) -> None:
    """Per-step latency of full, cache and reuse steps and of each pruning method, next to tomesd and DeepCache, on the SD 1.5 UNet."""
    from prunesched.bench.step import StepBenchConfig, run_step_bench

    _at_least_one({"latent": latent, "batch": batch, "repeats": repeats})
    if compile_backend:
        import torch._dynamo

        backends = torch._dynamo.list_backends(exclude_tags=())
        if compile_backend not in backends:
            raise click.BadParameter(f"not a torch.compile backend: {compile_backend!r}; e.g. inductor, eager", param_hint="--compile")
    config = StepBenchConfig(
        latent=latent, batch=batch, repeats=repeats, ratios=ratios, e2e_latent=e2e_latent, device=device, compile=compile_backend
    )
    result = run_step_bench(config, log=lambda message: click.echo(message, err=True))
    _report(result, output)


@bench.command("atedm")
@click.option(
    "--latent", default=128, show_default=True, help="Latent side of the MAC count (128 = 1024x1024 on SDXL; counted on the meta device)."
)
@click.option("--batch", default=2, show_default=True, help="UNet batch (2 = one image with CFG).")
@click.option("--ratio", default=0.63, show_default=True, help="AT-EDM's prune ratio rho (the paper's 4.1 T budget).")
@click.option("--steps", default=50, show_default=True, help="Denoising steps the per-step average is over.")
@click.option("--tau", default=15, show_default=True, help="DSAP's prune-less first steps.")
@click.option("--iterations", default=10, show_default=True, help="G-WPR iterations (a fixed count).")
@click.option(
    "--latency-latent", default=32, show_default=True, help="Latent side of the timed runs (0 skips timing; the CPU handles 32, a GPU 128)."
)
@click.option("--repeats", default=3, show_default=True, help="Timed [full, step] pairs per step kind.")
@click.option("--profile", is_flag=True, help="Also record the busiest operators of one full and one AT-EDM call (torch.profiler).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("bench_atedm.json"), show_default=True)
def bench_atedm(output: Path, **options: Any) -> None:
    """AT-EDM's MACs and latency per step on the SDXL UNet at the paper's budget (rho 63 %, DSAP 15 of 50 steps)."""
    from prunesched.bench.atedm import AtedmBenchConfig, run_atedm_bench

    _at_least_one({name: options[name] for name in ("latent", "batch", "steps", "iterations", "repeats")})
    result = run_atedm_bench(AtedmBenchConfig(**options), log=lambda message: click.echo(message, err=True))
    macs, dsap = result["macs_per_call"], result["dsap"]
    _report(
        result,
        output,
        f"MACs per step: full {macs['full'] / 1e12:.2f} T, AT-EDM {macs['atedm'] / 1e12:.2f} T "
        f"({result['mac_reduction']:.1%} fewer; paper {result['paper_reduction']:.1%}); with DSAP "
        f"{dsap['mac_reduction_at_the_same_ratio']:.1%} fewer at the same ratio, the same budget at ratio "
        f"{dsap['ratio_for_the_same_budget']:.3f}",
    )


@bench.command("cat")
@click.option(
    "--latent", default=128, show_default=True, help="Latent side of the MAC count (128 = 1024x1024 on SD3; counted on the meta device)."
)
@click.option("--batch", default=2, show_default=True, help="Transformer batch (2 = one image with CFG).")
@click.option("--steps", default=28, show_default=True, help="Denoising steps of the generation.")
@click.option("--t0", default=8, show_default=True, help="Full steps before CAT starts.")
@click.option("--alpha", default=0.3, show_default=True, help="Fraction of the image tokens each CAT step recomputes.")
@click.option(
    "--latency-latent", default=32, show_default=True, help="Latent side of the timed runs (0 skips timing; a CPU handles 32, a GPU 128)."
)
@click.option("--repeats", default=2, show_default=True, help="Timed [full, CAT] pairs.")
@click.option("--profile", is_flag=True, help="Also record the busiest operators of one full and one CAT call (torch.profiler).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("bench_cat.json"), show_default=True)
def bench_cat(output: Path, **options: Any) -> None:
    """CAT pruning's MACs and latency on the SD3-medium transformer at the paper's setting (28 steps, t0 8, alpha 0.3)."""
    from prunesched.bench.cat import CatBenchConfig, run_cat_bench

    _at_least_one({name: options[name] for name in ("latent", "batch", "steps", "repeats")})
    if not 0 < options["alpha"] <= 1:
        raise click.BadParameter(f"must be in (0, 1], got {options['alpha']}", param_hint="--alpha")
    if not 0 <= options["t0"] < options["steps"]:
        raise click.BadParameter(f"must be from 0 to --steps - 1, got {options['t0']}", param_hint="--t0")
    result = run_cat_bench(CatBenchConfig(**options), log=lambda message: click.echo(message, err=True))
    macs = result["macs_per_generation"]
    _report(
        result,
        output,
        f"MACs per generation: full {macs['full'] / 1e12:.1f} T, CAT {macs['cat'] / 1e12:.1f} T "
        f"({result['mac_reduction']:.1%} fewer; paper {result['paper']['mac_reduction']:.1%})",
    )


@bench.command("dit")
@click.option(
    "--model",
    "models",
    type=click.Choice(["sd3-medium", "pixart-sigma", "flux1-dev"]),
    multiple=True,
    help="A DiT to count at 1024x1024 on the meta device (repeatable; default: all three). SD3-medium and FLUX.1-dev are also timed.",
)
@click.option(
    "--latency-latent", default=32, show_default=True, help="Latent side of the timed runs (a CPU handles 32; a GPU the full 128)."
)
@click.option("--latency-text-tokens", default=64, show_default=True, help="Conditioning tokens of the timed runs.")
@click.option("--repeats", default=3, show_default=True, help="Timed [full, cached] pairs per cache kind (0 skips timing).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("bench_dit.json"), show_default=True)
def bench_dit(models: tuple[str, ...], latency_latent: int, latency_text_tokens: int, repeats: int, output: Path) -> None:
    """Block caching's MACs on SD3-medium, PixArt-Σ and FLUX.1-dev (full model, F8B0/F1B0 every N, integer depths, a mix),
    FLUX.1-dev's beside cache-dit's published counts, and CPU latency on reduced-width SD3 and Flux."""
    from prunesched.bench.dit import MODELS, REDUCED, DitBenchConfig, run_dit_bench

    _at_least_one({"latency-latent": latency_latent, "latency-text-tokens": latency_text_tokens})
    if repeats < 0:
        raise click.BadParameter(f"must be >= 0, got {repeats}", param_hint="--repeats")
    keys = models or tuple(MODELS)
    config = DitBenchConfig(
        models={key: MODELS[key] for key in keys},
        latency={key: REDUCED[key] for key in keys if key in REDUCED},
        latency_latent=latency_latent,
        latency_text_tokens=latency_text_tokens,
        repeats=repeats,
    )
    result = run_dit_bench(config, log=lambda message: click.echo(message, err=True))
    lines = [
        f"{count['model']}: full {count['macs']['full'] / 1e12:.1f} T MACs; "
        + ", ".join(f"{name} {share:.2f}" for name, share in count["relative_to_full"].items() if name != "full")
        for count in result["macs"].values()
    ]
    _report(result, output, "\n".join(lines))


@bench.command("gpu")
@click.option(
    "--section",
    "sections",
    type=click.Choice(["step", "atedm", "cat", "search"]),
    multiple=True,
    help="Run only this section (repeatable; default: all four, in this order).",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("bench_gpu.json"), show_default=True)
def bench_gpu(sections: tuple[str, ...], output: Path) -> None:
    """The GPU kit, at most 8 minutes on one GPU: bench step in fp16 at 512x512 with tomesd, DeepCache and DaTo's Ours-b1
    end to end; one AT-EDM SDXL and one CAT SD3 step at 1024x1024; a 2-generation shapes search on GPU actors.

    The JSON is rewritten after each section, so a run cut short keeps what it measured; the search is stored in the
    database beside it (OUTPUT with the suffix .db).
    """
    import torch

    from prunesched.bench.gpu import gpu_kit, run_kit

    if not torch.cuda.is_available():
        raise click.UsageError("no CUDA GPU is visible: the GPU kit times fp16 with CUDA events; on a CPU run bench step, atedm and cat")
    kit = [section for section in gpu_kit(output.with_suffix(".db")) if not sections or section.name in sections]
    result = run_kit(kit, lambda partial: _write(partial, output), log=lambda message: click.echo(message, err=True))
    _report(result, output)
