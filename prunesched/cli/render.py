"""How the CLI shows things: tables, metric values with their intervals, and the live progress of a search."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prunesched.search.coordinator import Progress as SearchProgress
    from prunesched.search.review import BaselineComparison
    from prunesched.storage.records import FrozenCandidate, FrozenEvaluation


class ProgressView:
    """A live progress line (generation, evaluations done/running/failed, front size, hypervolume).

    On a terminal it is a bar that redraws; elsewhere (logs, CI) one line per finished generation.
    Ctrl-C stops the search (its finished evaluations are stored) and says how to resume it.
    """

    def __init__(self, generations: int, db: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.db = db
        self.search_id: int | None = None
        self.console = Console(stderr=True)
        columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        self.bar = Progress(*columns, console=self.console, disable=not self.console.is_terminal)
        self.task = self.bar.add_task("starting workers", total=generations)

    def __call__(self, p: SearchProgress) -> None:
        self.search_id = p.search_id
        stage = f"generation {p.generation + 1}/{p.generations}" if p.stage == "search" else p.stage
        line = f"{stage}  done {p.done}  running {p.running}  failed {p.failed}  front {p.front_size}  hv {number(p.hypervolume)}"
        if p.confirming:  # front points being evaluated again on more images (prunesched.search.confirmation)
            line += f"  confirming {p.confirming} front points"
        if p.workers_up < p.workers:  # an actor died or its node was lost: its candidate is retried, a replacement is starting
            line += f"  workers {p.workers_up}/{p.workers} (replacing {p.workers - p.workers_up})"
        self.bar.update(self.task, description=line, completed=max(p.generation, 0) + p.generation_stored)
        if p.generation_stored and not self.console.is_terminal:
            self.console.print(line)

    def __enter__(self) -> ProgressView:
        self.bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.bar.stop()
        if kind is KeyboardInterrupt and self.search_id is not None:
            self.console.print(
                f"search {self.search_id} interrupted; continue it with 'prunesched search resume {self.search_id} --db {self.db}'"
            )
            sys.exit(130)


def table(headers: list[str], rows: list[list[object]], page: bool = False) -> None:
    """Print a table, each cell :func:`printable`; with ``page``, one taller than a terminal opens in its pager (``$PAGER``) to browse."""
    from contextlib import nullcontext

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*headers, box=None, pad_edge=False)
    for row in rows:
        table.add_row(*[Text(printable(str(v))) for v in row])  # Text: a stored "[red]" is shown, not read as rich markup
    console = Console(width=200)
    paged = page and console.is_terminal and len(rows) + 2 > console.height
    with console.pager(styles=True) if paged else nullcontext():
        console.print(table)


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on (escape sequences, newlines, bidi controls) written as its escape.

    Names, errors and paths stored in a database or given on the command line reach the terminal
    only through this, so a search named ``"\x1b]0;pwned\x07"`` cannot retitle, recolour or rewrite the screen.
    """
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def metric(metrics: dict | None, name: str) -> str:
    if not metrics or name not in metrics:
        return "-"
    item = metrics[name]
    ci = item.get("ci")
    return f"{item['value']:.4g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "") + f" n={item['n']}"


def row_dict(candidate: FrozenCandidate, evaluation: FrozenEvaluation, names: Sequence[str]) -> dict[str, Any]:
    """One evaluation as the JSON that ``front --json`` and ``history --json`` print."""
    return {
        "candidate": candidate.id,
        "generation_born": candidate.generation_born,
        "schedule_hash": candidate.schedule_hash,
        "status": evaluation.status,
        "objectives": dict(zip(names, [evaluation.objective_0, evaluation.objective_1])),
        "metrics": evaluation.metrics,
        "attempts": evaluation.attempts,
        "worker": evaluation.worker,
        "device": evaluation.device,
        "duration_s": evaluation.duration_s,
        "error": evaluation.error,
        "baseline": candidate.baseline,
        "violation": evaluation.violation,
        "violation_reason": evaluation.violation_reason,
        "screening": evaluation.screening,
        "promoted": evaluation.promoted,
        "confirmation": evaluation.confirmation,
        "schedule": candidate.schedule,
    }


def comparison_dict(row: BaselineComparison) -> dict[str, Any]:
    """One :class:`prunesched.search.review.BaselineComparison` as JSON."""
    return {
        "baseline": row.name,
        "candidate": row.baseline.candidate.id,
        "objectives": list(row.baseline.objectives),
        "violation_reason": row.baseline.reason,
        "nearest": None if row.nearest is None else row.nearest.candidate.id,
        "nearest_objectives": None if row.nearest is None else list(row.nearest.objectives),
        "difference": row.difference,
        "dominated_beyond_intervals": row.dominated,
    }
