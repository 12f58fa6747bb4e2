"""Run the reliability suite and write what it observed to docs/reliability.md.

    python experiments/reliability.py          # about 12 minutes on 2 CPU cores

Every bad input, worker fault, coordinator crash and attack the suite tries becomes a row with
the outcome the test saw; the load and concurrent-reader runs become their numbers. The readers
run for three minutes here (90 s in CI). The page is only written when the whole suite passes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers-s", type=float, default=180.0, help="how long the concurrent readers run")
    parser.add_argument("--page", type=Path, default=ROOT / "docs" / "reliability.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "observed.jsonl"
        env = os.environ | {"PRUNESCHED_RELIABILITY_LOG": str(log), "PRUNESCHED_READERS_S": str(args.readers_s)}
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow or not slow", "tests/reliability"],
            cwd=ROOT,
            env=env,
        )
        if run.returncode != 0:
            sys.exit(f"the reliability suite failed (exit code {run.returncode}); {args.page} left as it was")
        observed: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for line in log.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            observed[row.pop("section")].append(row)
    args.page.write_text(render(observed), encoding="utf-8")
    print(f"wrote {args.page}")


def render(observed: dict[str, list[dict[str, Any]]]) -> str:
    load, readers = observed["load"][0], observed["readers"][0]
    commands = ", ".join(f"`{r['command']}`" for r in readers["readers"])
    parts = [
        HEADER,
        "## Bad input\n\nEach is one CLI command; `{dir}` is a scratch folder, `{db}` a copy of a real search database "
        "(or of the broken file the case names). Every one exits with code 2, prints one error line, and leaves "
        "every stored byte as it was.\n",
        table(
            ["case", "command", "exit", "observed"],
            [[r["case"], code(r["command"]), r["exit_code"], code(r["observed"])] for r in observed["bad input"]],
        ),
        "## Worker faults\n\nOne candidate of a real search is struck (one worker, one retry, a 2 s timeout); the others must "
        "finish once each.\n",
        table(
            ["fault", "struck", "stored as", "attempts", "error", "others done once"],
            [
                [r["fault"], r["struck"], r["status"], r["attempts"], code(r["error"] or ""), r["others_done_once"]]
                for r in observed["worker fault"]
            ],
        ),
        "## Coordinator crashes\n\nA real coordinator process is SIGKILLed at the drawn passage through the point, then the "
        "search is resumed; the last column compares its final front with an uninterrupted run's.\n",
        table(
            ["run", "killed at", "passage", "after resume", "evaluations", "evaluated again", "same front"],
            [
                [r["run"], r["point"], r["passage"], r["status"], r["evaluations"], r["evaluated_again"], r["same_front"]]
                for r in observed["coordinator crash"]
            ],
        ),
        "## Disk full\n\nA search whose database fills up (SQLite's own SQLITE_FULL), then resumed once space is back; output "
        "files whose write meets ENOSPC. Each is one line, and nothing stored is lost.\n",
        fields_table(observed["disk full"]),
        "## One coordinator per search\n\nTwo real `search resume` processes held together at the moment they take a crashed "
        "search; and resumes of a search another coordinator runs.\n",
        fields_table(observed["ownership"]),
        "## Ray\n\nA search without `--address` beside a Ray cluster running on the machine; addresses nobody answers or of "
        "a refused form; the processes left after a coordinator is SIGKILLed.\n",
        fields_table(observed["ray lifecycle"]),
        "## A lost Ray node\n\nA real cluster of a head and two worker nodes; one node is removed mid-search and a new one added later.\n",
        fields_table(observed["node loss"]),
        "## Attacks\n\nEvery payload would create a file if it ran; none did.\n",
        table(
            ["test", "command", "exit", "observed"],
            [[r["test"], code(r["command"]), r["exit_code"], code(r["observed"])] for r in observed["attack"]],
        ),
        "## Load\n",
        table(
            ["measure", "value"],
            [
                ["distinct evaluations (NSGA-II, 2 workers, instant evaluator)", load["evaluations"]],
                ["generations", load["generations"]],
                ["wall time", f"{load['wall_s']:.0f} s"],
                ["throughput", f"{load['evaluations_per_s']:.0f} evaluations/s"],
                [
                    "coordinator memory, first / last quarter of the run",
                    f"{load['rss_mib_first_quarter']:.0f} / {load['rss_mib_last_quarter']:.0f} MiB",
                ],
                ["peak memory of the test process", f"{load['peak_rss_mib']:.0f} MiB"],
                [
                    "database, checkpointed",
                    f"{load['checkpointed_bytes'] / 2**20:.1f} MiB "
                    f"({load['checkpointed_bytes_per_1000_evaluations'] / 2**10:.0f} KiB per 1000 evaluations)",
                ],
                *[
                    [f"`{name}` (in process / fresh process)", f"{read['in_process_s']:.2f} / {read['fresh_process_s']:.2f} s"]
                    for name, read in load["read_s"].items()
                ],
            ],
        ),
        f"## Concurrent readers\n\n{len(readers['readers'])} processes, one per command, ran {commands} in a loop for "
        f"{readers['seconds']:.0f} s while a search wrote the same SQLite file.\n",
        table(
            ["reader", "reads", "slowest", "errors"],
            [[r["command"], r["reads"], f"{r['slowest_s']:.2f} s", len(r["errors"])] for r in readers["readers"]],
        ),
        f"The writer committed {readers['writes']} times meanwhile; the slowest write took {readers['slowest_write_s'] * 1000:.0f} ms.\n",
    ]
    return "\n".join(parts)


HEADER = """# Reliability

What prunesched does when things go wrong, as observed by the reliability suite
(`tests/reliability/`: `python -m pytest` runs it but for the two soak tests, `-m slow` runs those). This page is its output:
`python experiments/reliability.py` runs the suite and rewrites the page, and refuses to when
any test fails.
"""


def code(text: str) -> str:
    return "`" + str(text).replace("|", "\\|").replace("`", "'") + "`" if text else ""


def fields_table(rows: list[dict[str, Any]]) -> str:
    """A section whose tests observe differing fields: one row per observation, its fields as ``name: value``."""

    def fields(row: dict[str, Any]) -> str:
        return "; ".join(f"{k}: {code(v if isinstance(v, str) else json.dumps(v))}" for k, v in row.items() if k != "test")

    return table(["test", "observed"], [[r["test"], fields(r)] for r in rows])


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
