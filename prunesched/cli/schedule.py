"""``prunesched schedule``: inspect schedule files and convert them to other tools' formats."""

from __future__ import annotations

from pathlib import Path

import click

from prunesched.cli.search import FORMAT_OPTION, OUTPUT_RULE

DATO_OPTION = click.option(
    "--dato", is_flag=True, help="PATH is a DaTo table (cache ids {0, 1, 12} and prune ratios), not a schedule document."
)


@click.group()
def schedule() -> None:
    """Inspect schedule files and convert them to other tools' formats."""


@schedule.command("show")
@click.argument("path", type=click.Path(path_type=Path))
@DATO_OPTION
def schedule_show(path: Path, dato: bool) -> None:
    """Validate a schedule file and print its steps."""
    from collections import Counter

    from prunesched.runtime.schedule import Schedule, cache_label

    loaded = Schedule.load_dato(path) if dato else Schedule.load(path)
    method = ", ".join(f"{k}={v}" for k, v in loaded.method.to_dict().items() if k != "name")
    click.echo(f"{len(loaded)} steps, method {loaded.method.name} ({method}), slots {loaded.slots}, hash {loaded.hash[:12]}")
    counts = Counter(cache_label(s.cache, s.forecast) for s in loaded.steps)
    click.echo("cache: " + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())))
    click.echo(f"mean prune ratio: {sum(s.prune for s in loaded.steps) / len(loaded):.3f}")
    for i, step in enumerate(loaded.steps):
        forecast = f"  +f{step.forecast}" if step.forecast else ""
        click.echo(f"{i:4d}  {step.cache!s:>6}  {step.prune:.2f}{forecast}")


@schedule.command("convert")
@click.argument("path", type=click.Path(path_type=Path))
@DATO_OPTION
@FORMAT_OPTION
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help=f"File to write. {OUTPUT_RULE}")
def schedule_convert(path: Path, dato: bool, format: str, output: Path) -> None:
    """Write the schedule file PATH in a format: a schedule document (from a DaTo table, --dato) or cache-dit's config,
    which is refused in one line if cache-dit cannot express the schedule."""
    from prunesched.runtime.interop import export_text
    from prunesched.runtime.schedule import Schedule
    from prunesched.storage.outputs import write_output

    loaded = Schedule.load_dato(path) if dato else Schedule.load(path)
    write_output(output, export_text(loaded, format).encode("utf-8"), None)
    click.echo(f"wrote {output} as {format}")
