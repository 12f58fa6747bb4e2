"""Run one experiment config: a paper's table re-measured, or a paper's search, with the paper's numbers beside ours.

    python experiments/run.py experiments/configs/shapes_methods.toml
    python experiments/run.py experiments/configs/dato_sd15_imagenet.toml --path sd15=/models/sd-v1-5

A config is a TOML file (docs/experiments.md lists them all):

    kind = "table"                  # or "search"
    title = "..."                   # what it reproduces
    paper = "..."                   # the source of the paper's numbers and its protocol

    [paths]                         # local inputs, checked before any work starts
    sd15 = { path = "~/models/stable-diffusion-v1-5", what = "Stable Diffusion 1.5, a diffusers folder" }

    [evaluator]                     # table: the keys of prunesched.evaluation.settings.PipelineSettings;
    model = "{sd15}"                #   "{name}" is replaced by the path of [paths] name

    [[rows]]                        # table: one evaluated schedule per row, the paper's numbers beside it
    label = "SiTo 0.5"
    family = "SiTo"                 #   rows of one family are one line in the plot
    schedule = { kind = "uniform", prune = 0.5, method = "sito" }
    paper = { fid = 26.78, speedup = 1.58 }

    [search]                        # search: a search config, as `prunesched search launch` takes

Schedules of a row: ``{kind = "uniform", prune, cache, method}``, ``{kind = "deepcache", interval,
branch, prune, method, forecast}`` (on a DiT ``branch`` is a depth or a block cache such as ``"F1B0"``;
``branch = "reuse"`` for reuse steps; ``forecast``, their order: docs/schedule.md), ``{kind = "cat", t0, alpha}``
(CAT on a DiT), ``{kind = "dato-ours-b1"}`` (DaTo's published table), ``{kind = "threshold", calibration,
rule, threshold}`` (the fixed schedule FirstBlockCache, TeaCache or MagCache runs on a calibration file from
``prunesched calibrate``: docs/calibration.md), ``{kind = "file", path}`` (a schedule document) or
``{kind = "dato-file", path}``
(a DaTo table, see ``Schedule.load_dato``), each optionally with ``prune_less = TAU``
(DSAP) and ``slots`` (where a UNet method prunes); a row without a schedule shows the paper's
numbers only (a method prunesched does not run).
A table writes its rows as JSON (--out), the same table as Markdown beside it, and with ``plot =
true`` quality against cost per family as a PNG (--plot). A search is stored in --db.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prunesched.checks import check_number
from prunesched.errors import ConfigError, PruneschedError
from prunesched.files import read_text
from prunesched.runtime.paper_tables import dato_ours_b1
from prunesched.runtime.schedule import BlockCache, PruneLess, Schedule

ROOT = Path(__file__).resolve().parent
KINDS = ("table", "search")
SCHEDULE_KINDS = ("uniform", "deepcache", "cat", "dato-ours-b1", "threshold", "file", "dato-file")
COLUMNS = ("feature_distance", "fid", "caption_accuracy", "psnr", "relative_macs", "relative_latency", "speedup")
"""Measured columns of a table, in this order, where the evaluation gives them; speed-up is 1 / relative latency."""


def load(path: Path, overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The config at ``path`` with every ``{name}`` replaced by its [paths] entry (or ``overrides``), all checked to exist."""
    text = read_text(path, "experiment config", ConfigError)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"experiment config {str(path)!r} is not valid TOML: {exc}") from None
    if data.get("kind") not in KINDS:
        raise ConfigError(f"{path}: kind must be one of {', '.join(KINDS)}, got {data.get('kind')!r}")
    paths = resolve_paths(data.get("paths", {}), overrides or {}, path)
    resolved = substitute({k: v for k, v in data.items() if k != "paths"}, paths, path)
    resolved["paths"] = paths
    return resolved


def resolve_paths(table: Any, overrides: Mapping[str, str], config: Path) -> dict[str, str]:
    """Each [paths] entry's path (``~`` expanded, ``overrides`` first); refuses the config if any is missing."""
    if not isinstance(table, Mapping) or not all(isinstance(v, Mapping) and isinstance(v.get("path"), str) for v in table.values()):
        raise ConfigError(f"{config}: [paths] entries must look like name = {{ path = '...', what = '...' }}")
    unknown = sorted(set(overrides) - set(table))
    if unknown:
        raise ConfigError(f"--path {unknown[0]}: {config} has no such path; it has: {', '.join(table) or 'none'}")
    paths = {name: str(Path(overrides.get(name, entry["path"])).expanduser()) for name, entry in table.items()}
    missing = [f"{name} ({table[name].get('what', 'a file or folder')}) at {p!r}" for name, p in paths.items() if not Path(p).exists()]
    if missing:
        example = missing[0].split(" ", 1)[0]
        raise ConfigError(f"{config}: not found: {'; '.join(missing)}; pass --path {example}=YOUR_PATH or edit [paths]")
    return paths


def substitute(value: Any, paths: Mapping[str, str], config: Path) -> Any:
    """``value`` with ``{name}`` in every string replaced by ``paths[name]``."""
    if isinstance(value, str):
        for name in re.findall(r"\{(\w+)\}", value):
            if name not in paths:
                raise ConfigError(f"{config}: {{{name}}} in {value!r} is not one of the config's [paths]: {', '.join(paths) or 'none'}")
        return re.sub(r"\{(\w+)\}", lambda m: paths[m.group(1)], value)
    if isinstance(value, Mapping):
        return {k: substitute(v, paths, config) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, paths, config) for v in value]
    return value


def row_schedule(spec: Any, steps: int, model: str | None = None) -> Schedule:
    """The schedule a row's ``schedule`` table names, at the pipeline's loop length ``steps``; a threshold row's
    calibration is refused where it was recorded on other weights than ``model``'s or another loop (where ``model`` is
    given: its loop length is known once the pipeline is loaded).

    Any kind takes ``prune_less = TAU`` (DSAP's blocks stay unpruned for the first TAU iterations)
    and ``slots`` (the schedule's slots, e.g. ``"all"``).
    """
    if not isinstance(spec, Mapping) or spec.get("kind") not in SCHEDULE_KINDS:
        raise ConfigError(f"a row's schedule must be a table with kind one of {', '.join(SCHEDULE_KINDS)}, got {spec!r:.80}")
    options = {k: v for k, v in spec.items() if k not in ("kind", "prune_less", "slots")}
    try:
        if spec["kind"] == "uniform":
            schedule = Schedule.uniform(steps, **options)
        elif spec["kind"] == "deepcache":
            branch = options.get("branch", 0)
            named = isinstance(branch, str) and branch != "reuse"  # a DiT's block cache such as "F1B0"
            schedule = Schedule.deepcache(steps, **options | {"branch": BlockCache.from_name(branch) if named else branch})
        elif spec["kind"] == "cat":
            schedule = Schedule.cat(steps, **options)
        elif spec["kind"] == "dato-ours-b1":
            schedule = dato_ours_b1(**options)
        elif spec["kind"] == "threshold":
            schedule = threshold_row(steps, model, **options)
        elif set(options) != {"path"}:
            raise ConfigError(f"a schedule of kind {spec['kind']!r} takes only a path, got {spec!r:.80}")
        else:
            schedule = (Schedule.load_dato if spec["kind"] == "dato-file" else Schedule.load)(options["path"])
    except TypeError as exc:
        raise ConfigError(f"schedule {dict(spec)!r:.80}: {exc}") from None
    if "slots" in spec:
        schedule = dataclasses.replace(schedule, slots=spec["slots"])
    return schedule if "prune_less" not in spec else dataclasses.replace(schedule, prune_less=PruneLess(spec["prune_less"]))


def threshold_row(steps: int, model: str | None, calibration: str, rule: str, threshold: float, method: str = "sito") -> Schedule:
    """The schedule the threshold method ``rule`` (first_block, teacache or magcache) runs at ``threshold`` on the
    ``calibration`` file, checked against ``model`` and ``steps`` where a model is given (see :func:`row_schedule`)."""
    from prunesched.calibration.document import Calibration
    from prunesched.calibration.thresholds import threshold_schedule
    from prunesched.search.calibration import MAX_THRESHOLD

    check_number(threshold, "threshold", "a threshold row", high=MAX_THRESHOLD)
    document = Calibration.load(calibration)
    if model is not None:
        from prunesched.models.loading import model_fingerprint

        document.check(model_fingerprint(model), steps, calibration)
    return threshold_schedule(document, rule, threshold, method)


def run_table(config: dict[str, Any], out: Path, plot_path: Path | None) -> dict[str, Any]:
    """Evaluate every row with a schedule, then write the rows (measured and the paper's) as JSON and Markdown."""
    from prunesched.evaluation.evaluate import PipelineEvaluator
    from prunesched.evaluation.settings import PipelineSettings

    rows = config.get("rows")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, Mapping) and isinstance(r.get("label"), str) for r in rows):
        raise ConfigError("a table config needs [[rows]], each with a label")
    try:
        settings = PipelineSettings(**config.get("evaluator", {}))
    except TypeError as exc:
        raise ConfigError(f"[evaluator]: {exc}") from None
    for row in rows:  # a bad schedule is refused before minutes of preparation
        if "schedule" in row:
            row_schedule(row["schedule"], settings.num_inference_steps)
    began = time.perf_counter()
    print(f"preparing the full model's {settings.images} images, reference features and cost tables (cached for the next run)", flush=True)
    evaluation = PipelineEvaluator(settings)
    schedules = [row_schedule(r["schedule"], evaluation.steps, settings.model) if "schedule" in r else None for r in rows]
    results = []
    for row, schedule in zip(rows, schedules):
        entry = {"label": row["label"], "family": row.get("family", row["label"]), "paper": row.get("paper", {}), "note": row.get("note")}
        if schedule is not None:
            entry |= {"schedule_hash": schedule.hash, "metrics": with_speedup(evaluation.evaluate(schedule))}
        results.append(entry)
        print(markdown([entry], header=len(results) == 1), flush=True)
    full = evaluation.quality(evaluation.full_images)  # the baseline every paired metric compares with
    report = {
        "title": config.get("title"),
        "paper": config.get("paper"),
        "measured_with": evaluation.describe(),
        "full_model": full,
        "rows": results,
        "wall_s": time.perf_counter() - began,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    out.with_suffix(".md").write_text(f"{config.get('title', '')}\n\n{markdown(results)}\n")
    if plot_path is not None and config.get("plot"):
        plot(results, full, plot_path)
    return report


def with_speedup(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` plus the speed-up the papers report (1 / relative latency), when latency was measured."""
    if "relative_latency" not in metrics:
        return metrics
    latency = metrics["relative_latency"]
    ci = [1 / v for v in reversed(latency["ci"])] if latency.get("ci") else None
    return metrics | {"speedup": {"value": 1 / latency["value"], "n": latency["n"], "ci": ci}}


def markdown(rows: list[dict[str, Any]], header: bool = True) -> str:
    """The rows as a Markdown table: each measured column, then the paper's numbers."""
    measured = [c for c in COLUMNS if any(c in r.get("metrics", {}) for r in rows)] or list(COLUMNS)
    papers = list(dict.fromkeys(k for r in rows for k in r["paper"]))
    lines = []
    if header:
        names = ["row", *measured, *(f"paper: {k}" for k in papers), "note"]
        lines += ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for r in rows:
        cells = [f"{r['metrics'][c]['value']:.3g}" if c in r.get("metrics", {}) else "" for c in measured]
        cells += [str(r["paper"].get(k, "")) for k in papers]
        lines.append("| " + " | ".join([r["label"], *cells, r.get("note") or ""]) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], full: dict[str, Any], path: Path) -> None:
    """Quality (FID, and caption accuracy where the judge gives it) against relative MACs and latency, a line per family;
    the full model's caption accuracy as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows if "metrics" in r]
    panels = [
        (x, y)
        for x, y in (("relative_macs", "fid"), ("relative_latency", "fid"), ("relative_macs", "caption_accuracy"))
        if all(x in r["metrics"] and y in r["metrics"] for r in measured)
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    for ax, (x, y) in zip(axes[0], panels):
        for family in dict.fromkeys(r["family"] for r in measured):
            own = sorted((r for r in measured if r["family"] == family), key=lambda r: r["metrics"][x]["value"])
            ax.plot(
                [r["metrics"][x]["value"] for r in own],
                [r["metrics"][y]["value"] for r in own],
                "o-" if len(own) > 1 else "*",
                label=family,
                markersize=5 if len(own) > 1 else 10,
            )
        if y in full and y != "fid":
            ax.axhline(full[y]["value"], color="gray", linestyle="--", label="full model")
        ax.set_xlabel(x.replace("_", " ") + " (full model = 1)")
        ax.set_ylabel(y.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def run_search(config: dict[str, Any], db: str) -> int:
    """Run the config's [search] as ``prunesched search launch`` does; returns the search's id."""
    from prunesched.cli.search import launch_with_progress
    from prunesched.search.config import SearchConfig

    if not isinstance(config.get("search"), Mapping):
        raise ConfigError("a search config needs a [search] table: a search config as `prunesched search launch` takes")
    return launch_with_progress(SearchConfig.from_dict(config["search"]), db)


def evaluator_setting(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--evaluator`` as the key and the TOML value (``seed=1000``, ``cost=["macs"]``)."""
    key, _, value = item.partition("=")
    try:
        return key, tomllib.loads(f"value = {value}")["value"]
    except tomllib.TOMLDecodeError:
        raise ConfigError(f'--evaluator takes KEY=VALUE with a TOML value, such as seed=1000 or cost=["macs"]; got {item!r}') from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--path", action="append", default=[], metavar="NAME=PATH", help="where a [paths] input is on this machine")
    parser.add_argument("--out", type=Path, help="table: result JSON [default: experiments/results/CONFIG.json]")
    parser.add_argument("--plot", type=Path, help="table: plot PNG [default: docs/images/CONFIG.png]")
    parser.add_argument("--db", help="search: database file or SQLAlchemy URL [default: CONFIG.db]")
    parser.add_argument(
        "--evaluator",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="table: replace one [evaluator] setting, VALUE in TOML (seed=1000 images=16: the same rows on new images)",
    )
    args = parser.parse_args(argv)
    try:
        overrides = dict(item.split("=", 1) for item in args.path if "=" in item)
        if len(overrides) != len(args.path):
            raise ConfigError(f"--path takes NAME=PATH, got {next(p for p in args.path if '=' not in p)!r}")
        config = load(args.config, overrides)
        if config["kind"] == "table":
            config["evaluator"] = config.get("evaluator", {}) | dict(evaluator_setting(item) for item in args.evaluator)
            out = args.out or ROOT / "results" / f"{args.config.stem}.json"
            run_table(config, out, args.plot or ROOT.parent / "docs" / "images" / f"{args.config.stem}.png")
        elif args.evaluator:
            raise ConfigError("--evaluator changes a table's [evaluator]; a search config's is its [search.evaluator]")
        else:
            run_search(config, args.db or f"{args.config.stem}.db")
    except PruneschedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
