"""The search commands: ``search launch/resume/status``, ``front``, ``export``, ``history``, ``db upgrade``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from prunesched.cli.render import ProgressView, comparison_dict, metric, number, row_dict, table
from prunesched.report.record import cache_summary, mean_prune
from prunesched.runtime.interop import FORMATS

if TYPE_CHECKING:
    from prunesched.search.config import SearchConfig
    from prunesched.storage.records import FrozenEvaluation

LARGEST = 2**63 - 1
"""The largest integer a database column holds (SQLite and PostgreSQL store 64 bits)."""

STORED_NUMBER = click.IntRange(min=0, max=LARGEST)
"""A search id, candidate id or generation number: a larger one is refused in one line instead of overflowing in the driver."""

OUTPUT_RULE = "A new name or a regular file (replaced whole); never the search database, a link or a device."
"""What an output path may be (:mod:`prunesched.storage.outputs`), for the help of every option that names one."""

FORMAT_OPTION = click.option(
    "--format",
    type=click.Choice(FORMATS),
    default="prunesched",
    show_default=True,
    help="prunesched: the schedule document; cache-dit: its config (per-step compute mask, block span) for cache_dit.load_configs.",
)
"""The file format of a written schedule (:mod:`prunesched.runtime.interop`); one that cannot express the schedule is refused."""

DB_OPTION = click.option(
    "--db",
    default="prunesched.db",
    show_default=True,
    envvar="PRUNESCHED_DB",
    help="Search database: a file path or any SQLAlchemy URL (env PRUNESCHED_DB).",
)


@click.group()
def search() -> None:
    """Run searches: launch, resume, status."""


@search.command("launch")
@click.argument("config", required=False, type=click.Path(dir_okay=False, path_type=Path))
@DB_OPTION
@click.option(
    "--address",
    default=None,
    help="Ray cluster to join: 'auto' (the one 'ray start' started here) or the head's host:port (GCS, e.g. 10.0.0.5:6379); "
    "Ray Client (ray://) is not supported. Default: a private local Ray instance, even if a cluster runs here.",
)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Evaluator actors (overrides [dispatch] workers).")
@click.option("--backend", type=click.Choice(["pymoo", "optuna", "random"]), default=None, help="Overrides [proposer] backend.")
@click.option("--sampler", type=click.Choice(["nsga2", "tpe"]), default=None, help="Optuna sampler (overrides [proposer] sampler).")
@click.option(
    "--preset",
    default=None,
    help="A shipped search config instead of CONFIG: shapes (the default: the shapes UNet) or shapes-dit (the shapes DiT).",
)
def search_launch(
    config: Path | None, db: str, address: str | None, workers: int | None, backend: str | None, sampler: str | None, preset: str | None
) -> None:
    """Run the search CONFIG.toml describes (default: the embedded default search) and store it in --db."""
    from dataclasses import replace

    from prunesched.search.config import DEFAULT_PRESET, SearchConfig

    if config is not None and preset is not None:
        raise click.UsageError("give a CONFIG file or --preset, not both")
    loaded = SearchConfig.load(config) if config is not None else SearchConfig.preset(preset or DEFAULT_PRESET)
    loaded = replace(
        loaded,
        dispatch=replace(loaded.dispatch, **_given(address=address, workers=workers)),
        proposer=replace(loaded.proposer, **_given(backend=backend, sampler=sampler)),
    )
    launch_with_progress(loaded, db)


def launch_with_progress(config: SearchConfig, db: str) -> int:
    """Run ``config`` to the end in ``db`` with the live progress line, and say where its front is; returns its id."""
    from prunesched.search.coordinator import launch

    with ProgressView(config.proposer.generations, db) as view:
        search_id = launch(config, db, progress=view)
    click.echo(f"search {search_id} finished; see 'prunesched front {search_id} --db {db}'")
    return search_id


@search.command("resume")
@click.argument("search_id", type=STORED_NUMBER)
@DB_OPTION
@click.option(
    "--force",
    is_flag=True,
    help="Take over a search a coordinator on another host marked running (only when it is gone); never a live one on this host.",
)
def search_resume(search_id: int, db: str, force: bool) -> None:
    """Continue a stopped or crashed search from its last stored generation."""
    from prunesched.search.coordinator import resume
    from prunesched.storage import Store

    generations = Store(db).search(search_id).config["proposer"]["generations"]
    with ProgressView(generations, db) as view:
        resume(search_id, db, progress=view, force=force)
    click.echo(f"search {search_id} finished")


@search.command("status")
@click.argument("search_id", type=STORED_NUMBER, required=False)
@DB_OPTION
def search_status(search_id: int | None, db: str) -> None:
    """Where each search (or search SEARCH_ID) stands."""
    from prunesched.storage import Store

    store = Store(db)
    searches = [store.search(search_id)] if search_id is not None else store.searches()
    rows = []
    for item in searches:
        counts = store.counts(item.id)
        latest = store.generation(item.id)
        rows.append(
            [
                item.id,
                item.name,
                item.status,
                f"{latest.number + 1 if latest else 0}/{item.config['proposer']['generations']}",
                counts.done,
                counts.active,
                counts.failed,
                len(latest.front) if latest else 0,
                number(latest.hypervolume if latest else None),
            ]
        )
    table(["id", "name", "status", "generations", "done", "running", "failed", "front", "hypervolume"], rows)
    for item in searches:  # a candidate whose attempt was lost (its worker or the worker's node died, a timeout, an error)
        retried = [(c.id, e.attempts) for c, e in store.evaluations(item.id) if e.attempts > 1]
        if retried:
            named = ", ".join(f"{cid} ({attempts} attempts)" for cid, attempts in retried[:20])
            more = f" and {len(retried) - 20} more" if len(retried) > 20 else ""
            click.echo(f"search {item.id}: {len(retried)} candidates retried: {named}{more}")


@click.command("front")
@click.argument("search_id", type=STORED_NUMBER)
@click.option("--generation", type=STORED_NUMBER, default=None, help="Front after this generation (default: the latest).")
@click.option(
    "--validated",
    is_flag=True,
    help="The front of the validation: the final front and the baselines on more images (what export picks from).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@DB_OPTION
def front_command(search_id: int, generation: int | None, validated: bool, as_json: bool, db: str) -> None:
    """The Pareto front of a search: every non-dominated schedule with its metrics."""
    from prunesched.errors import ConfigError
    from prunesched.search import review
    from prunesched.storage import Store

    if validated and generation is not None:
        raise click.UsageError("--validated shows the front of the final validation; --generation cannot come with it")
    store = Store(db)
    names = store.search(search_id).objectives
    if validated:
        points = review.validated_front(store, search_id)
        if not points:
            raise ConfigError(f"search {search_id} has no validation yet: it is stored after the last generation ('search resume' runs it)")
        title = f"search {search_id}, validated front: {len(points)} points, each on {points[0].metrics[names[0]]['n']} new images"
    else:
        number, points = review.front(store, search_id, generation)
        title = f"search {search_id}, front after generation {number}: {len(points)} points"
    if as_json:
        rows = [{**row_dict(p.candidate, p.evaluation, names), "objectives": dict(zip(names, p.objectives))} for p in points]
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(title)
    extra = ["relative_latency", "fid"] if validated else []
    shown = [f"{n} (measured)" if n == "relative_latency" else n for n in extra]
    table(
        ["candidate", "born", names[0], names[1], *shown, "cache (full/partial/reuse)", "mean prune"],
        [
            [
                p.candidate.id,
                p.candidate.baseline or p.candidate.generation_born,
                metric(dict(p.metrics), names[0]),
                metric(dict(p.metrics), names[1]),
                *(metric(dict(p.metrics), n) for n in extra),
                cache_summary(p.candidate.schedule),
                mean_prune(p.candidate.schedule),
            ]
            for p in points
        ],
    )
    agreement = review.latency_agreement(points) if validated else None
    if agreement is not None:
        rho, ratio, n = agreement
        click.echo(f"cost model against measured latency on these {n} points: Spearman {rho:.2f}, measured/predicted median {ratio:.2f}")


@click.command("baselines")
@click.argument("search_id", type=STORED_NUMBER)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@DB_OPTION
def baselines_command(search_id: int, as_json: bool, db: str) -> None:
    """The hand-made schedules the search was measured against, each beside the searched point nearest it."""
    from prunesched.search import review
    from prunesched.storage import Store

    store = Store(db)
    names = store.search(search_id).objectives
    rows = review.baselines(store, search_id)
    if as_json:
        click.echo(json.dumps([comparison_dict(row) for row in rows], indent=2))
        return
    click.echo(f"search {search_id}: {len(rows)} baselines, each beside the searched point of best {names[0]} at equal or lower {names[1]}")
    table(
        ["baseline", "candidate", names[0], names[1], "guardrails", "nearest searched", f"its {names[0]}", "difference", "beaten"],
        [
            [
                row.name,
                row.baseline.candidate.id,
                metric(dict(row.baseline.metrics), names[0]),
                metric(dict(row.baseline.metrics), names[1]),
                row.baseline.reason or "kept",
                "-" if row.nearest is None else row.nearest.candidate.id,
                "-" if row.nearest is None else metric(dict(row.nearest.metrics), names[0]),
                number(row.difference),
                "beyond the intervals" if row.dominated else "no",
            ]
            for row in rows
        ],
    )


@click.command("export")
@click.argument("search_id", type=STORED_NUMBER)
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help=f"Schedule file to write. {OUTPUT_RULE}"
)
@click.option(
    "--pick",
    "how",
    type=click.Choice(["weighted", "fastest", "best"]),
    default="weighted",
    show_default=True,
    help="weighted: least quality + weight * cost (DaTo Algorithm 1); fastest; best quality. From the front.",
)
@click.option("--weight", type=float, default=1.0, show_default=True, help="w of the weighted pick.")
@click.option("--candidate", "candidate_id", type=STORED_NUMBER, default=None, help="Export this candidate instead of picking.")
@click.option("--generation", type=STORED_NUMBER, default=None, help="Pick from the front after this generation (default: the latest).")
@FORMAT_OPTION
@DB_OPTION
def export_command(
    search_id: int, output: Path, how: str, weight: float, candidate_id: int | None, generation: int | None, format: str, db: str
) -> None:
    """Write one schedule of a search, with its provenance, to a JSON file that prunesched.apply loads (or cache-dit, --format)."""
    from prunesched.search import review
    from prunesched.storage import Store

    source = click.get_current_context().get_parameter_source
    options = (("--pick", "how"), ("--weight", "weight"), ("--generation", "generation"))
    picking = [option for option, name in options if source(name) is not click.core.ParameterSource.DEFAULT]
    if candidate_id is not None and picking:
        raise click.UsageError(
            f"--candidate names the schedule to export; {', '.join(picking)} (which pick from a front) cannot come with it"
        )
    schedule = review.export(Store(db), search_id, output, how, weight, candidate_id, generation, format)
    click.echo(f"wrote candidate {schedule.provenance['candidate']} ({schedule.provenance['pick']}) to {output} as {format}")


@click.command("history")
@click.option(
    "--search", "search_id", type=STORED_NUMBER, default=None, help="Only this search's evaluations (default: list the searches)."
)
@click.option("--status", type=click.Choice(["queued", "running", "done", "failed"]), default=None)
@click.option("--generation", type=STORED_NUMBER, default=None, help="Only candidates born in this generation.")
@click.option(
    "--range",
    "ranges",
    metavar="METRIC:LOW:HIGH",
    multiple=True,
    callback=lambda _c, _p, v: [metric_range(r) for r in v],
    help="Only evaluations whose METRIC lies in [LOW, HIGH]; either bound may be empty (fid::0.5). Repeatable.",
)
@click.option("--limit", type=click.IntRange(min=1, max=LARGEST), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@DB_OPTION
def history(
    search_id: int | None,
    status: str | None,
    generation: int | None,
    ranges: list[tuple[str, float, float]],
    limit: int | None,
    as_json: bool,
    db: str,
) -> None:
    """What was tried: the searches, or one search's evaluations, filtered (paged on a terminal)."""
    from prunesched.storage import Store

    store = Store(db)
    if search_id is None:
        if status is not None or generation is not None or ranges:
            raise click.UsageError("--status, --generation and --range filter one search's evaluations; add --search ID")
        searches = store.searches()
        if as_json:
            click.echo(
                json.dumps(
                    [
                        {"id": s.id, "name": s.name, "status": s.status, "created_at": s.created_at.isoformat(), "config": s.config}
                        for s in searches
                    ],
                    indent=2,
                )
            )
            return
        table(
            ["id", "name", "status", "created", "evaluations"],
            [[s.id, s.name, s.status, f"{s.created_at:%Y-%m-%d %H:%M}", store.counts(s.id).total] for s in searches],
        )
        return
    names = store.search(search_id).objectives
    rows = store.evaluations(search_id, status=status, generation=generation, limit=None if ranges else limit)
    rows = [(c, e) for c, e in rows if in_ranges(e.metrics, ranges)][:limit]
    if as_json:
        click.echo(json.dumps([row_dict(c, e, names) for c, e in rows], indent=2))
        return
    table(
        ["candidate", "born", "status", names[0], names[1], "attempts", "worker", "seconds", "error, guardrail, screening, confirmation"],
        [
            [
                c.id,
                c.baseline or c.generation_born,
                e.status if e.feasible or e.status != "done" else "screened out" if e.promoted is False else "refused",
                metric(e.metrics, names[0]),
                metric(e.metrics, names[1]),
                e.attempts,
                e.worker or "",
                number(e.duration_s),
                _note(e, names[0])[:60],
            ]
            for c, e in rows
        ],
        page=True,
    )


def _note(evaluation: FrozenEvaluation, quality: str) -> str:
    """What ``history`` says beside an evaluation's values: why it failed or is kept off the fronts, else what its
    confirmation on more images replaced (:mod:`prunesched.search.confirmation`)."""
    reason = evaluation.error or evaluation.violation_reason or evaluation.excluded
    if reason or evaluation.confirmation is None:
        return reason or ""
    replaced = evaluation.confirmation.get("unconfirmed")
    if replaced is None:
        return f"confirmation failed: {evaluation.confirmation['error']}"
    return f"confirmed; was {metric(replaced['metrics'], quality)}"


@click.group("db")
def db_group() -> None:
    """Maintain search databases."""


@db_group.command("upgrade")
@DB_OPTION
def db_upgrade(db: str) -> None:
    """Migrate a search database to this version's schema."""
    from prunesched.storage import Store
    from prunesched.storage.database import SCHEMA_REVISION

    Store(db, mode="write")
    click.echo(f"{db} is at schema {SCHEMA_REVISION}")


def metric_range(text: str) -> tuple[str, float, float]:
    """``"fid:0:0.5"`` as ``("fid", 0.0, 0.5)``; an empty bound is open."""
    parts = text.split(":")
    try:
        if len(parts) != 3 or not parts[0]:
            raise ValueError
        return parts[0], float(parts[1] or "-inf"), float(parts[2] or "inf")
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not METRIC:LOW:HIGH (e.g. fid:0:0.5 or relative_latency::0.6)", param_hint="--range"
        ) from None


def in_ranges(metrics: dict | None, ranges: list[tuple[str, float, float]]) -> bool:
    """Whether every named metric is present and within its range."""
    return all(low <= (metrics or {}).get(name, {}).get("value", math.nan) <= high for name, low, high in ranges)


def _given(**options: Any) -> dict[str, Any]:
    """The options the user gave (not None), to override the config's values."""
    return {name: value for name, value in options.items() if value is not None}
