"""``prunesched demo``: the embedded model with and without well-known schedules, as a picture and a table."""

from __future__ import annotations

from pathlib import Path

import click

from prunesched.cli.render import number, table
from prunesched.models import shapes


@click.command("demo")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("demo.png"),
    show_default=True,
    help="The image grid: a new name or a regular file.",
)
@click.option("--images", type=int, default=8, show_default=True, help="Images per schedule (held-out captions, seeds 0..N-1).")
@click.option(
    "--model", type=click.Choice(list(shapes.MODELS)), default="shapes", show_default=True, help="The shapes UNet or the shapes DiT."
)
@click.option(
    "--steps",
    "num_inference_steps",
    type=int,
    default=None,
    help="Inference steps [default: 50 PNDM steps for shapes, as SD 1.5; 28 Euler steps for shapes-dit, as SD3].",
)
@click.option("--repeats", type=int, default=2, show_default=True, help="Timed runs per speed-up, each paired with a full run.")
@click.option("--cache-dir", default=None, help="Images and reference features [default: $PRUNESCHED_CACHE or ~/.cache/prunesched].")
def demo(output: Path, model: str, images: int, num_inference_steps: int | None, repeats: int, cache_dir: str | None) -> None:
    """Compare a shapes model's full output with well-known schedules: all-full, DeepCache, SiTo 0.5 and DaTo on the
    UNet; block caches (F1B1, DBCache's F1B0) and CAT on the DiT."""
    from prunesched.demo import run_demo, save_grid
    from prunesched.storage.outputs import check_output

    check_output(output, None)  # before the minutes of sampling
    rows = run_demo(images, num_inference_steps, repeats, cache_dir, log=lambda line: click.echo(line, err=True), model=model)
    names = ["caption_accuracy", "fid", "psnr", "relative_latency"]
    table(
        ["schedule", "judge accuracy", "FID to full", "PSNR dB", "speed-up"],
        [
            [
                row.name,
                *(number(row.metrics[n]["value"]) if n in row.metrics else "-" for n in names[:3]),
                f"{1 / row.metrics['relative_latency']['value']:.2f}x",
            ]
            for row in rows[1:]
        ],
    )
    click.echo(f"wrote {save_grid(rows, output)}")
