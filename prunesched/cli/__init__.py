"""The ``prunesched`` command. Bad input prints one line naming the problem and exits with code 2."""

from __future__ import annotations

import sys

import click

from prunesched.cli import bench, evaluate, schedule, search
from prunesched.errors import PruneschedError


class _Group(click.Group):
    """Turns every :class:`PruneschedError` into a one-line message and exit code 2."""

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


for command in (search.search, search.front, search.export, search.history, search.db, schedule.schedule, evaluate.evaluate, bench.bench):
    main.add_command(command)
