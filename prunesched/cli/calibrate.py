"""``prunesched calibrate``: how much the full model changes from step to step, and the threshold methods' schedules.

It runs the full model on a few prompts with forward hooks (:mod:`prunesched.calibration.recording`), writes
the calibration document, prints the three signals per loop iteration and the schedules FirstBlockCache,
TeaCache and MagCache would run at the given thresholds with their cost from the per-step cost model, and
optionally draws the per-block changes as a heat map. A search config's ``[calibration]`` table reads the file.
"""

from __future__ import annotations

from pathlib import Path

import click

from prunesched.calibration.recording import DEFAULT_PROMPTS
from prunesched.calibration.thresholds import RULES
from prunesched.cli.evaluate import DEFAULT_STEPS, prompts_option
from prunesched.cli.render import number, table
from prunesched.evaluation.settings import MAX_IMAGES, MAX_INFERENCE_STEPS


def _thresholds(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, tuple[float, ...]]:
    """``--thresholds METHOD=V,V`` (repeatable) as ``{method: thresholds}``; none given: every method's defaults."""
    chosen: dict[str, tuple[float, ...]] = {}
    for value in values:
        rule, _, numbers = value.partition("=")
        if rule not in RULES:
            raise click.BadParameter(f"{value!r} names no method; valid: {', '.join(RULES)}, as METHOD=0.1,0.2")
        try:
            chosen[rule] = tuple(float(v) for v in numbers.split(","))
        except ValueError:
            raise click.BadParameter(f"expected METHOD=comma-separated numbers like teacache=0.1,0.2, got {value!r}") from None
        if any(not 0 <= v < float("inf") for v in chosen[rule]):
            raise click.BadParameter(f"thresholds are numbers >= 0, got {value!r}")
    return chosen or {name: rule.thresholds for name, rule in RULES.items()}


@click.command("calibrate")
@click.argument("model")
@click.option(
    "--prompts",
    type=click.IntRange(1, MAX_IMAGES),
    default=DEFAULT_PROMPTS,
    show_default=True,
    help="Prompts to run, in one batch (image i uses seed SEED + i).",
)
@click.option(
    "--prompt-set",
    default=None,
    show_default="shapes",
    help="Where the prompts come from: shapes | imagenet | coco:FILE | parti:FILE | text:FILE | FILE (one prompt per line).",
)
@click.option(
    "--steps",
    "num_inference_steps",
    type=click.IntRange(1, MAX_INFERENCE_STEPS),
    default=DEFAULT_STEPS,
    show_default=True,
    help="num_inference_steps of the pipeline call: a search's must be the same.",
)
@click.option("--guidance", "guidance_scale", type=float, default=7.5, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option(
    "--thresholds",
    multiple=True,
    callback=_thresholds,
    metavar="METHOD=V,V",
    help=f"Thresholds of one method ({', '.join(RULES)}) to print the schedule of; repeatable [default: "
    + "; ".join(f"{name}={','.join(f'{t:g}' for t in rule.thresholds)}" for name, rule in RULES.items())
    + "].",
)
@click.option(
    "--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also draw the per-block changes as a PNG heat map."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The calibration file [default: MODEL's name + .calibration.json]; a new name or a regular file, never a link or a device.",
)
def calibrate(
    model: str,
    prompts: int,
    prompt_set: str | None,
    num_inference_steps: int,
    guidance_scale: float,
    seed: int,
    thresholds: dict[str, tuple[float, ...]],
    plot: Path | None,
    output: Path | None,
) -> None:
    """Run MODEL's full model on a few prompts, record how much each block's output, the first block's residual and the
    output change from one loop iteration to the next, write it as a calibration file, and print the schedules
    FirstBlockCache, TeaCache and MagCache would run at the thresholds, with their cost."""
    from rich.console import Console
    from rich.progress import Progress

    from prunesched.calibration.recording import calibration_generator, record
    from prunesched.calibration.thresholds import strip, threshold_schedule
    from prunesched.evaluation.cost import CostModel
    from prunesched.evaluation.evaluate import default_cache_dir
    from prunesched.report.plots import calibration_plot, png
    from prunesched.storage.outputs import check_output, write_output

    output = check_output(output or Path(f"{Path(model).name}.calibration.json"), None)  # before the run, which takes minutes
    if plot is not None:
        check_output(plot, None)
    spec = prompts_option(prompt_set) if prompt_set is not None else None
    generator = calibration_generator(model, prompts, num_inference_steps, guidance_scale, seed, spec)
    console = Console(stderr=True)
    with Progress(console=console, disable=not console.is_terminal, transient=True) as bar:
        task = bar.add_task(f"calibrating {model} on {prompts} prompts", total=generator.loop_length)
        calibration = record(generator, lambda done, _total: bar.update(task, completed=done))
    calibration.save(output)
    signals = ("first_block", "output", "magnitude_ratio")
    means, spreads = [calibration.mean(s) for s in signals], [calibration.spread(s) for s in signals]
    table(
        ["iteration", "timestep", "first block change", "output change", "magnitude ratio"],
        [
            [i, f"{calibration.timesteps[i]:g}", *(f"{number(m[i])} ±{number(d[i])}" if i else "-" for m, d in zip(means, spreads))]
            for i in range(calibration.loop_length)
        ],
    )
    click.echo("profiling the step costs...", err=True)
    costs = CostModel(generator, default_cache_dir(), repeats=2)
    rows: list[list[object]] = []
    for rule, values in thresholds.items():
        for value in values:
            schedule = threshold_schedule(calibration, rule, value)
            cost = costs.table(schedule)
            full = sum(step.cache == "full" for step in schedule.steps)
            rows.append(
                [
                    RULES[rule].label,
                    f"{value:g}",
                    f"{full}/{len(schedule)}",
                    strip(schedule),
                    number(cost.relative_latency(schedule)),
                    number(cost.relative_macs(schedule)),
                ]
            )
    table(["method", "threshold", "full steps", "steps (F full, c cached blocks, r reused)", "predicted latency", "MACs"], rows)
    click.echo("(latency and MACs as a fraction of the full model's)")
    if plot is not None:
        write_output(plot, png(calibration_plot(calibration)), None)
        click.echo(f"wrote {plot}")
    click.echo(f"wrote {output}")
