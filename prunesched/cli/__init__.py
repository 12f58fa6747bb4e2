"""The ``prunesched`` command. Bad input prints one line naming the problem and exits with code 2."""

from __future__ import annotations

import sys
from typing import Any

import click

from prunesched.cli import bench, demo, evaluate, report, schedule, search
from prunesched.errors import PruneschedError


class _Group(click.Group):
    """Turns every :class:`PruneschedError`, and click's own usage errors, into one line and exit code 2."""

    def main(
        self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None, standalone_mode: bool = True, **extra: Any
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:  # click's standalone mode would print the whole usage text above the error
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except PruneschedError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="prunesched")
def main() -> None:
    """Search, export and apply per-step caching and token-pruning schedules for diffusers pipelines."""


COMMANDS = (
    search.search,
    search.front_command,
    search.export_command,
    search.history,
    report.report,
    report.compare,
    report.export_optuna,
    search.db_group,
    schedule.schedule,
    evaluate.evaluate,
    demo.demo,
    bench.bench,
)
for command in COMMANDS:
    main.add_command(command)
