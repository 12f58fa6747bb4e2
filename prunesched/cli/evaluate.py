"""``prunesched eval``: evaluate one schedule file and write the result as JSON.

Its defaults are the embedded default search's evaluator (model, images, steps, guidance), so an
exported schedule is re-checked with one command on exactly what the search scored it by: the
paired feature distance and the other quality metrics, the cost, and the guardrails the search
applies (the shapes judge's caption accuracy against the full model's lower bound).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from prunesched.cli.render import number, table

DEFAULT_STEPS = 20
"""num_inference_steps of the embedded default search (``prunesched/search/presets/shapes.toml``), a test keeps them equal."""
DEFAULT_IMAGES = 16
"""Images of the embedded default search."""


def prompts_option(value: str) -> dict[str, str]:
    """``--prompts``: ``shapes``, ``imagenet``, ``coco:FILE``, ``parti:FILE``, ``text:FILE``, or a text file's path."""
    if value in ("shapes", "imagenet"):
        return {"kind": value}
    kind, _, path = value.partition(":")
    if kind in ("coco", "parti", "text") and path:
        return {"kind": kind, "path": path}
    return {"kind": "text", "path": value}


@click.command("eval")
@click.argument("schedule_path", metavar="SCHEDULE", type=click.Path(path_type=Path))
@click.option("--dato", is_flag=True, help="SCHEDULE is a DaTo table (cache ids {0, 1, 12} and prune ratios), not a schedule document.")
@click.option("--model", default="shapes", show_default=True, help="Built-in name, diffusers folder, or hub id in the local cache.")
@click.option(
    "--prompts",
    "prompts",
    default=None,
    show_default="shapes",
    help="shapes | imagenet | coco:FILE | parti:FILE | text:FILE | FILE (one prompt per line).",
)
@click.option("--images", type=int, default=DEFAULT_IMAGES, show_default=True, help="Images to generate (image i uses seed SEED + i).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--steps", "num_inference_steps", type=int, default=DEFAULT_STEPS, show_default=True, help="num_inference_steps of the pipeline call."
)
@click.option("--guidance", "guidance_scale", type=float, default=7.5, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True, help="Timed runs per latency, after one warm-up.")
@click.option("--latency-scope", type=click.Choice(["loop", "pipeline"]), default="loop", show_default=True)
@click.option(
    "--dtype",
    type=click.Choice(["auto", "float32", "float16", "bfloat16"]),
    default="auto",
    show_default=True,
    help="The pipeline's precision; auto is fp16 on a GPU, fp32 on a CPU.",
)
@click.option(
    "--cost", multiple=True, type=click.Choice(["measured", "predicted", "macs"]), help="Cost sources (repeatable; default: measured)."
)
@click.option("--reference", default=None, help="FID/KID reference: 'model' (the unaccelerated images) or a folder of real images.")
@click.option(
    "--inception-weights", type=click.Path(path_type=str), default=None, help="Local feature-extractor weight file (offline clusters)."
)
@click.option(
    "--feature-extractor",
    default=None,
    help="A torch-fidelity feature extractor [default: shapes-judge for the shapes model, else inception-v3-compat].",
)
@click.option(
    "--cache-dir", default=None, help="Images, reference features and cost tables [default: $PRUNESCHED_CACHE or ~/.cache/prunesched]."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Result JSON [default: SCHEDULE's name + .eval.json]; a new name or a regular file, never a link or a device.",
)
def evaluate(schedule_path: Path, dato: bool, output: Path | None, prompts: str | None, cost: tuple[str, ...], **options: Any) -> None:
    """Evaluate SCHEDULE (a schedule document, or a DaTo table with --dato): quality against the unaccelerated model, and cost."""
    from prunesched.evaluation.evaluate import PipelineEvaluator
    from prunesched.evaluation.settings import PipelineSettings
    from prunesched.runtime.schedule import Schedule
    from prunesched.search.guardrails import check, guardrails_from_config, guardrails_to_config
    from prunesched.storage.outputs import check_output, write_output

    schedule = Schedule.load_dato(schedule_path) if dato else Schedule.load(schedule_path)
    output = check_output(output or Path(f"{schedule_path.stem}.eval.json"), None)  # before the evaluation, which takes minutes
    if prompts is not None:
        options["prompts"] = prompts_option(prompts)
    settings = PipelineSettings(cost=cost or ("measured",), **options)
    click.echo(f"loading {settings.model} and the unaccelerated images ({settings.images})...", err=True)
    evaluation = PipelineEvaluator(settings)
    click.echo(f"evaluating {schedule_path.name} ({len(schedule)} steps) on {evaluation.device}...", err=True)
    metrics = evaluation.evaluate(schedule)
    table(
        ["metric", "value", "95% CI", "n"],
        [
            [name, number(m["value"]), "-" if m["ci"] is None else f"{number(m['ci'][0])} .. {number(m['ci'][1])}", m["n"]]
            for name, m in metrics.items()
        ],
    )
    rails = guardrails_from_config(settings.default_guardrails())
    violation, reason = check(rails, metrics, evaluation.full_metrics())
    if rails:
        click.echo(f"guardrails: {reason}: a search keeps this schedule off its fronts" if violation else "guardrails: kept")
    result = {
        "schedule": schedule.to_dict(),
        "schedule_hash": schedule.hash,
        "metrics": metrics,
        "full_model": evaluation.full_metrics(),
        "guardrails": {"rules": guardrails_to_config(rails), "violation": violation, "reason": reason},
        "measured_with": evaluation.describe(),
    }
    write_output(output, (json.dumps(result, indent=2, default=str) + "\n").encode("utf-8"), None)
    click.echo(f"wrote {output}")
