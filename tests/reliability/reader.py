"""A reader process: runs one read-only command against a search database over and over, for a while.

    python -m tests.reliability.reader COMMAND DB SECONDS OUT

COMMAND is one of :data:`COMMANDS`: the front, the history, the status, the HTML report (plots only)
and the Optuna mirror (into a new Optuna database each time). Files go to a scratch folder beside OUT
and are deleted after each read. OUT receives JSON: how many reads, the slowest, and every error
(with "database is locked" among them if SQLite ever refused a reader).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from prunesched.cli import main

COMMANDS = {
    "front": ["front", "1"],
    "history": ["history", "--search", "1", "--limit", "50"],
    "status": ["search", "status", "1"],
    "report": ["report", "1", "--images", "0", "-o", "{scratch}/report.html"],
    "export-optuna": ["export-optuna", "1", "--storage", "sqlite:///{scratch}/mirror.db"],
}
"""``{scratch}`` is the reader's own folder, emptied after every read (an output path may not be a device such as /dev/null)."""


def read(command: str, db: str, seconds: float, scratch: Path) -> dict[str, object]:
    runner, reads, slowest, errors = CliRunner(), 0, 0.0, []
    argv = [a.replace("{scratch}", str(scratch)) for a in COMMANDS[command]]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        result = runner.invoke(main, [*argv, "--db", db])
        slowest = max(slowest, time.perf_counter() - start)
        reads += 1
        if result.exit_code != 0:
            errors.append(result.output.strip() or repr(result.exception))
        for path in scratch.iterdir():
            path.unlink()
    return {"command": command, "reads": reads, "slowest_s": slowest, "errors": errors}


if __name__ == "__main__":
    command, db, seconds, out = sys.argv[1:]
    scratch = Path(out).with_suffix(".scratch")
    scratch.mkdir()
    Path(out).write_text(json.dumps(read(command, db, float(seconds), scratch)))
