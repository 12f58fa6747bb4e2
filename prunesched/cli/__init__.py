"""The ``prunesched`` command. Bad input prints one line naming the problem and exits with code 2.

A full disk (the database's or an output file's) is one line too, with exit code 1: everything
committed before it is kept, and a search continues with ``prunesched search resume``.
"""

from __future__ import annotations

import errno
import sqlite3
import sys
from typing import Any

import click

from prunesched.cli import bench, calibrate, demo, evaluate, report, schedule, search
from prunesched.cli.render import printable
from prunesched.errors import PruneschedError


class _Group(click.Group):
    """Turns every :class:`PruneschedError`, and click's own usage errors, into one line and exit code 2; a full disk into one line, 1."""

    def main(
        self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None, standalone_mode: bool = True, **extra: Any
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:  # click's standalone mode would print the whole usage text above the error
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            click.echo(f"error: {printable(' '.join(exc.format_message().split()))}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except PruneschedError as exc:
            click.echo(f"error: {printable(str(exc))}", err=True)
            sys.exit(2)
        except Exception as exc:
            full = _disk_full(exc)
            if full is None:
                raise
            click.echo(
                f"error: the disk is full ({printable(str(full))}); everything stored before it is kept: free space, then run the "
                "command again ('prunesched search resume ID' continues a search)",
                err=True,
            )
            sys.exit(1)


def _disk_full(error: BaseException) -> BaseException | None:
    """The error in ``error``'s chain that says the disk is full (ENOSPC, or SQLite's SQLITE_FULL that SQLAlchemy wraps), or None.

    A coordinator that fails to mark its search interrupted on the full disk raises a second
    error from the first, so the whole chain is searched.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        cause = getattr(current, "orig", None) or current  # sqlalchemy.exc.DBAPIError keeps the driver's error in .orig
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return cause
        if isinstance(cause, sqlite3.OperationalError) and "database or disk is full" in str(cause):
            return cause
        current = current.__cause__ or current.__context__
    return None


@click.group(cls=_Group)
@click.version_option(package_name="prunesched")
def main() -> None:
    """Search, export and apply per-step caching and token-pruning schedules for diffusers pipelines."""


COMMANDS = (
    search.search,
    search.front_command,
    search.baselines_command,
    search.export_command,
    search.history,
    report.report,
    report.compare,
    report.export_optuna,
    search.db_group,
    schedule.schedule,
    evaluate.evaluate,
    calibrate.calibrate,
    demo.demo,
    bench.bench,
)
for command in COMMANDS:
    main.add_command(command)
