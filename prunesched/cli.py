"""The ``prunesched`` command. Bad input prints one line naming the problem and exits with code 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

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


@main.group()
def schedule() -> None:
    """Inspect schedule files."""


@schedule.command("show")
@click.argument("path", type=click.Path(path_type=Path))
def schedule_show(path: Path) -> None:
    """Validate a schedule file and print its steps."""
    from collections import Counter

    from prunesched.runtime.schedule import Schedule

    loaded = Schedule.load(path)
    method = ", ".join(f"{k}={v}" for k, v in loaded.method.to_dict().items() if k != "name")
    click.echo(f"{len(loaded)} steps, method {loaded.method.name} ({method}), slots {loaded.slots}, hash {loaded.hash[:12]}")
    counts = Counter("branch " + str(s.cache) if isinstance(s.cache, int) else s.cache for s in loaded.steps)
    click.echo("cache: " + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())))
    click.echo(f"mean prune ratio: {sum(s.prune for s in loaded.steps) / len(loaded):.3f}")
    for i, step in enumerate(loaded.steps):
        click.echo(f"{i:4d}  {str(step.cache):>6}  {step.prune:.2f}")


DB_OPTION = click.option(
    "--db", default="prunesched.db", show_default=True, envvar="PRUNESCHED_DB",
    help="Search database: a file path or any SQLAlchemy URL (env PRUNESCHED_DB).",
)  # fmt: skip


@main.group()
def search() -> None:
    """Run searches: launch, resume, status."""


@search.command("launch")
@click.argument("config", required=False, type=click.Path(dir_okay=False, path_type=Path))
@DB_OPTION
@click.option("--address", default=None, help="Ray cluster to join ('auto' or ray://host:port); default: a local Ray instance.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Evaluator actors (overrides [dispatch] workers).")
@click.option("--backend", type=click.Choice(["pymoo", "optuna", "random"]), default=None, help="Overrides [proposer] backend.")
@click.option("--sampler", type=click.Choice(["nsga2", "tpe"]), default=None, help="Optuna sampler (overrides [proposer] sampler).")
def search_launch(
    config: Path | None, db: str, address: str | None, workers: int | None, backend: str | None, sampler: str | None
) -> None:
    """Run the search CONFIG.toml describes (default: the embedded default search) and store it in --db."""
    from dataclasses import replace

    from prunesched.search.config import SearchConfig
    from prunesched.search.coordinator import launch

    loaded = SearchConfig.default() if config is None else SearchConfig.load(config)
    loaded = replace(
        loaded,
        dispatch=replace(loaded.dispatch, **_given(address=address, workers=workers)),
        proposer=replace(loaded.proposer, **_given(backend=backend, sampler=sampler)),
    )
    with _progress_view(loaded.proposer.generations, db) as view:
        search_id = launch(loaded, db, progress=view)
    click.echo(f"search {search_id} finished; see 'prunesched front {search_id} --db {db}'")


@search.command("resume")
@click.argument("search_id", type=int)
@DB_OPTION
@click.option("--force", is_flag=True, help="Take over a search another host's coordinator marked running (only when it is gone).")
def search_resume(search_id: int, db: str, force: bool) -> None:
    """Continue a stopped or crashed search from its last stored generation."""
    from prunesched.search.coordinator import resume
    from prunesched.storage import Store

    generations = Store(db).search(search_id).config["proposer"]["generations"]
    with _progress_view(generations, db) as view:
        resume(search_id, db, progress=view, force=force)
    click.echo(f"search {search_id} finished")


@search.command("status")
@click.argument("search_id", type=int, required=False)
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
        rows.append([
            item.id, item.name, item.status, f"{latest.number + 1 if latest else 0}/{item.config['proposer']['generations']}",
            counts.done, counts.active, counts.failed, len(latest.front) if latest else 0,
            _number(latest.hypervolume if latest else None),
        ])  # fmt: skip
    _table(["id", "name", "status", "generations", "done", "running", "failed", "front", "hypervolume"], rows)


@main.command("front")
@click.argument("search_id", type=int)
@click.option("--generation", type=int, default=None, help="Front after this generation (default: the latest).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@DB_OPTION
def front_command(search_id: int, generation: int | None, as_json: bool, db: str) -> None:
    """The Pareto front of a search: every non-dominated schedule with its metrics."""
    from prunesched.search.review import front
    from prunesched.storage import Store

    store = Store(db)
    names = store.search(search_id).objectives
    number, points = front(store, search_id, generation)
    if as_json:
        click.echo(json.dumps([_row_dict(p.candidate, p.evaluation, names) for p in points], indent=2))
        return
    click.echo(f"search {search_id}, front after generation {number}: {len(points)} points")
    _table(
        ["candidate", "born", names[0], names[1], "cache (full/branch/reuse)", "mean prune"],
        [[p.candidate.id, p.candidate.generation_born, _metric(p.evaluation.metrics, names[0]), _metric(p.evaluation.metrics, names[1]),
          _cache_summary(p.candidate.schedule), _mean_prune(p.candidate.schedule)] for p in points],
    )  # fmt: skip


@main.command("export")
@click.argument("search_id", type=int)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Schedule file to write.")
@click.option("--pick", "how", type=click.Choice(["weighted", "fastest", "best"]), default="weighted", show_default=True,
              help="weighted: least quality + weight * cost (DaTo Algorithm 1); fastest; best quality. From the front.")  # fmt: skip
@click.option("--weight", type=float, default=1.0, show_default=True, help="w of the weighted pick.")
@click.option("--candidate", "candidate_id", type=int, default=None, help="Export this candidate instead of picking.")
@click.option("--generation", type=int, default=None, help="Pick from the front after this generation (default: the latest).")
@DB_OPTION
def export_command(search_id: int, output: Path, how: str, weight: float, candidate_id: int | None, generation: int | None, db: str) -> None:
    """Write one schedule of a search, with its provenance, to a JSON file that prunesched.apply loads."""
    from prunesched.search.review import export
    from prunesched.storage import Store

    schedule = export(Store(db), search_id, output, how, weight, candidate_id, generation)
    click.echo(f"wrote candidate {schedule.provenance['candidate']} ({schedule.provenance['pick']}) to {output}")


@main.command("history")
@click.option("--search", "search_id", type=int, default=None, help="Only this search's evaluations (default: list the searches).")
@click.option("--status", type=click.Choice(["queued", "running", "done", "failed"]), default=None)
@click.option("--generation", type=int, default=None, help="Only candidates born in this generation.")
@click.option("--limit", type=click.IntRange(min=1), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@DB_OPTION
def history_command(search_id: int | None, status: str | None, generation: int | None, limit: int | None, as_json: bool, db: str) -> None:
    """What was tried: the searches, or one search's evaluations, filtered."""
    from prunesched.storage import Store

    store = Store(db)
    if search_id is None:
        if status is not None or generation is not None:
            raise click.UsageError("--status and --generation filter one search's evaluations; add --search ID")
        searches = store.searches()
        if as_json:
            click.echo(json.dumps([{"id": s.id, "name": s.name, "status": s.status, "created_at": s.created_at.isoformat(),
                                    "config": s.config} for s in searches], indent=2))  # fmt: skip
            return
        _table(["id", "name", "status", "created", "evaluations"],
               [[s.id, s.name, s.status, f"{s.created_at:%Y-%m-%d %H:%M}", len(store.evaluations(s.id))] for s in searches])  # fmt: skip
        return
    names = store.search(search_id).objectives
    rows = store.evaluations(search_id, status=status, generation=generation, limit=limit)
    if as_json:
        click.echo(json.dumps([_row_dict(c, e, names) for c, e in rows], indent=2))
        return
    _table(
        ["candidate", "born", "status", names[0], names[1], "attempts", "worker", "seconds", "error"],
        [[c.id, c.generation_born, e.status, _metric(e.metrics, names[0]), _metric(e.metrics, names[1]), e.attempts,
          e.worker or "", _number(e.duration_s), (e.error or "")[:60]] for c, e in rows],
    )  # fmt: skip


@main.group("db")
def db_group() -> None:
    """Maintain search databases."""


@db_group.command("upgrade")
@DB_OPTION
def db_upgrade(db: str) -> None:
    """Migrate a search database to this version's schema."""
    from prunesched.storage import Store
    from prunesched.storage.database import head_revision

    Store(db, mode="write")
    click.echo(f"{db} is at schema {head_revision()}")


def _progress_view(generations: int, db: str):  # type: ignore[no-untyped-def]
    """A live progress line (generation, evaluations done/running/failed, front size, hypervolume).

    Ctrl-C stops the search (its finished evaluations are stored) and says how to resume it.
    """
    from contextlib import contextmanager

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    @contextmanager
    def view():  # type: ignore[no-untyped-def]
        console = Console(stderr=True)
        search_id = []
        columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
            task = bar.add_task("starting workers", total=generations)

            def update(p):  # type: ignore[no-untyped-def]
                search_id[:] = [p.search_id]
                line = (f"generation {p.generation + 1}/{p.generations}  done {p.done}  running {p.running}  failed {p.failed}  "
                        f"front {p.front_size}  hv {_number(p.hypervolume)}")  # fmt: skip
                bar.update(task, description=line, completed=p.generation + p.generation_stored)
                if p.generation_stored and not console.is_terminal:
                    console.print(line)

            try:
                yield update
            except KeyboardInterrupt:
                if not search_id:
                    raise
                console.print(f"search {search_id[0]} interrupted; continue it with 'prunesched search resume {search_id[0]} --db {db}'")
                sys.exit(130)

    return view()


def _given(**options: object) -> dict[str, object]:
    """The options the user gave (not None), to override the config's values."""
    return {name: value for name, value in options.items() if value is not None}


def _table(headers: list[str], rows: list[list[object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, box=None, pad_edge=False)
    for row in rows:
        table.add_row(*[str(v) for v in row])
    Console(width=200).print(table)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _metric(metrics: dict | None, name: str) -> str:
    if not metrics or name not in metrics:
        return "-"
    item = metrics[name]
    ci = item.get("ci")
    return f"{item['value']:.4g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "") + f" n={item['n']}"


def _cache_summary(schedule: dict) -> str:
    caches = [s["cache"] for s in schedule["steps"]]
    return f"{caches.count('full')}/{sum(isinstance(c, int) for c in caches)}/{caches.count('reuse')}"


def _mean_prune(schedule: dict) -> str:
    return f"{sum(s['prune'] for s in schedule['steps']) / len(schedule['steps']):.3f}"


def _row_dict(candidate, evaluation, names) -> dict:  # type: ignore[no-untyped-def]
    return {
        "candidate": candidate.id, "generation_born": candidate.generation_born, "schedule_hash": candidate.schedule_hash,
        "status": evaluation.status, "objectives": dict(zip(names, [evaluation.objective_0, evaluation.objective_1])),
        "metrics": evaluation.metrics, "attempts": evaluation.attempts, "worker": evaluation.worker, "device": evaluation.device,
        "duration_s": evaluation.duration_s, "error": evaluation.error, "schedule": candidate.schedule,
    }  # fmt: skip


@main.group()
def bench() -> None:
    """Benchmarks that write JSON."""


def _floats(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers like 0.3,0.5, got {value!r}") from None


@bench.command("step")
@click.option("--latent", default=64, show_default=True, help="Latent side (64 = 512x512 images on SD 1.5).")
@click.option("--batch", default=2, show_default=True, help="UNet batch (2 = one image with CFG).")
@click.option("--repeats", default=3, show_default=True, help="Timed [full, step] pairs per configuration (medians reported).")
@click.option("--ratios", default="0.3,0.4,0.5,0.6,0.7", show_default=True, callback=_floats, help="Prune ratios.")
@click.option("--e2e-latent", default=32, show_default=True, help="Latent side of the end-to-end DaTo Table 6 run (0 skips it).")
@click.option("--device", default="auto", show_default=True, help="auto: CUDA (fp16) when available, else CPU (fp32).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("bench_step.json"), show_default=True)
def bench_step(latent: int, batch: int, repeats: int, ratios: tuple[float, ...], e2e_latent: int, device: str, output: Path) -> None:
    """Per-step latency of full, cache and reuse steps and of each pruning method, next to tomesd and DeepCache, on the SD 1.5 UNet."""
    from prunesched.bench.step import StepBenchConfig, run_step_bench

    for name, value in (("--latent", latent), ("--batch", batch), ("--repeats", repeats)):
        if value < 1:
            raise click.BadParameter(f"must be >= 1, got {value}", param_hint=name)
    config = StepBenchConfig(latent=latent, batch=batch, repeats=repeats, ratios=ratios, e2e_latent=e2e_latent, device=device)
    result = run_step_bench(config, log=lambda message: click.echo(message, err=True))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, goal in result["goals"].items():
        click.echo(f"{'met ' if goal['met'] else 'MISS'}  {name}: {goal['value']:.3f} (goal {goal['goal']})")
    click.echo(f"wrote {output}")
