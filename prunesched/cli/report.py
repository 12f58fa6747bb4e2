"""Reviewing searches: ``report`` (one search as an HTML page) and ``compare`` (several searches' fronts in one plot)."""

from __future__ import annotations

from pathlib import Path

import click

from prunesched.cli.search import DB_OPTION, OUTPUT_RULE, STORED_NUMBER


@click.command("report")
@click.argument("search_id", type=STORED_NUMBER)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"HTML file [default: search-ID.html]. {OUTPUT_RULE}",
)
@click.option(
    "--png",
    "png_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write each plot as a PNG into this folder (each file follows the rule of -o).",
)
@click.option(
    "--images",
    type=click.IntRange(min=0),
    default=4,
    show_default=True,
    help="Sample images per front point and for the full model (0: none).",
)
@DB_OPTION
def report(search_id: int, output: Path | None, png_dir: Path | None, images: int, db: str) -> None:
    """One search as a self-contained HTML page: evaluations, fronts, hypervolume, schedules, samples, config."""
    from prunesched.report import read_search, write_report
    from prunesched.storage import Store

    store = Store(db)
    record = read_search(store, search_id)
    path = write_report(
        record,
        output or Path(f"search-{search_id}.html"),
        images,
        png_dir,
        log=lambda line: click.echo(line, err=True),
        database=store.file,
    )
    click.echo(f"wrote {path}" + (f" and the plots as PNG in {png_dir}" if png_dir else ""))


@click.command("compare")
@click.argument("search_ids", metavar="ID ID...", type=STORED_NUMBER, nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("fronts.png"),
    show_default=True,
    help=f"PNG file. {OUTPUT_RULE}",
)
@DB_OPTION
def compare(search_ids: tuple[int, ...], output: Path, db: str) -> None:
    """The latest Pareto fronts of two or more searches in one plot (their objectives must match)."""
    from prunesched.errors import ConfigError
    from prunesched.report.plots import compare_plot, png
    from prunesched.report.record import read_search
    from prunesched.storage import Store
    from prunesched.storage.outputs import check_output, write_output

    if len(search_ids) < 2:
        raise ConfigError(f"compare needs two or more search ids, got {len(search_ids)}")
    store = Store(db)
    check_output(output, store.file)
    records = [read_search(store, i) for i in search_ids]
    for record in records[1:]:
        if record.objectives != records[0].objectives:
            raise ConfigError(
                f"search {record.id} minimises {'/'.join(record.objectives)} but search {records[0].id} "
                f"{'/'.join(records[0].objectives)}; compare searches with the same objectives"
            )
    click.echo(f"wrote {write_output(output, png(compare_plot(records)), store.file)}")


@click.command("export-optuna")
@click.argument("search_id", type=STORED_NUMBER)
@click.option(
    "--storage",
    default="sqlite:///optuna.db",
    show_default=True,
    help="Optuna storage URL to write the study to; a SQLite file follows the rule of report -o.",
)
@click.option("--study", "name", default=None, help="Study name [default: prunesched-ID-NAME]; a study of that name is replaced.")
@DB_OPTION
def export_optuna(search_id: int, storage: str, name: str | None, db: str) -> None:
    """Mirror a search into an Optuna study for optuna-dashboard (the search database is only read)."""
    import optuna

    from prunesched.errors import OutputError
    from prunesched.report.optuna_mirror import mirror_to_optuna
    from prunesched.storage import Store
    from prunesched.storage.database import in_memory, sqlite_file
    from prunesched.storage.outputs import check_output

    store = Store(db)
    if in_memory(storage):
        raise OutputError(f"--storage {storage!r} is an in-memory database, which keeps nothing; pass sqlite:///FILE or a server URL")
    optuna_file = sqlite_file(storage)
    if optuna_file is not None:
        check_output(optuna_file, store.file)  # Optuna would create its tables inside the search database
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line of our own instead of Optuna's per-study log
    study = mirror_to_optuna(store, search_id, storage, name)
    click.echo(
        f"wrote study {study.study_name!r} to {storage}: {len(study.trials)} trials, {len(study.best_trials)} on the Pareto front; "
        f"browse it with 'optuna-dashboard {storage}'"
    )
