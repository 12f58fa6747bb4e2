"""Every ``prunesched`` command line in the README and docs/ parses against the real CLI: the command
exists and every option and argument is one it takes, with a valid value. The commands that do
work on data are executed by their own tests; this check keeps the docs from drifting."""

from __future__ import annotations

import contextlib
import shlex

import click
import pytest

from prunesched.cli import main
from tests.docs.pages import PAGES, code_blocks


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after 'prunesched') for each prunesched invocation in a bash block."""
    found = []
    for page in PAGES:
        for block in code_blocks(page, "bash"):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                command: list[str] = []
                for word in [*words, "&&"]:
                    if word in ("&&", "||", "|", ";"):
                        if command[:1] == ["prunesched"]:
                            found.append((f"{page.name}: {shlex.join(command)}", command[1:]))
                        command = []
                    else:
                        command.append(word)
    return found


def parse(argv: list[str]) -> None:
    """Parse argv down to the leaf command, as the CLI would before running it."""
    command: click.Command = main
    ctx = command.make_context("prunesched", list(argv))
    while isinstance(command, click.Group):
        rest = [*(getattr(ctx, "_protected_args", None) or ctx.protected_args), *ctx.args]  # click >= 8.2, or 8.1
        name, command, remaining = command.resolve_command(ctx, rest)
        assert command is not None, f"no command {name!r}"
        ctx = command.make_context(name, remaining, parent=ctx)


COMMANDS = documented_commands()


def test_the_docs_document_the_main_commands():
    names = {argv[0] for _, argv in COMMANDS if argv}
    assert {"search", "front", "export", "history", "report", "compare", "export-optuna", "eval"} <= names


@pytest.mark.parametrize("argv", [argv for _, argv in COMMANDS], ids=[where for where, _ in COMMANDS])
def test_a_documented_command_parses(argv):
    with contextlib.suppress(click.exceptions.Exit):  # --help, --version
        parse(argv)
