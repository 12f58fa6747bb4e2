"""``prunesched report``: one search as a single HTML file that opens from disk, with no server and nothing fetched.

Every picture is embedded as a PNG data URI, so the file can be mailed, archived or attached to a
paper's supplement as it is.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from prunesched.evaluation.generation import tile
from prunesched.report import plots
from prunesched.report.record import Point, SearchRecord, cache_summary, mean_prune
from prunesched.report.samples import sample_images
from prunesched.runtime.schedule import Schedule
from prunesched.search.evaluators import evaluator_settings
from prunesched.storage.outputs import check_output, write_output

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}img{max-width:100%}
table{border-collapse:collapse;font-size:.9em}td,th{padding:.25em .7em;border-bottom:1px solid #eee;text-align:left}
pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:.85em}.grid{display:flex;flex-wrap:wrap;gap:1em}
.row{display:flex;align-items:center;gap:1em;margin:.3em 0}.row span{width:12em;font-size:.85em}"""


def figures(record: SearchRecord) -> dict[str, Figure]:
    """The report's plots by file stem (also what ``--png`` writes)."""
    front = record.front()
    out = {
        "evaluations": plots.evaluations_plot(record),
        "fronts": plots.fronts_plot(record),
        "hypervolume": plots.hypervolume_plot(record),
    }
    if front:
        out["schedules"] = plots.strips_plot(front)
    if record.validated:
        out["validated"] = plots.validated_plot(record)
    return out


def write_report(
    record: SearchRecord,
    path: str | Path,
    images: int = 4,
    png_dir: str | Path | None = None,
    log: Callable[[str], None] = lambda _: None,
    database: Path | None = None,
) -> Path:
    """Write the report of ``record`` to ``path``; ``images`` sample images per front point (0: none); PNG plots into ``png_dir`` too.

    Every file is checked before the sample images are made and written whole, never onto ``database`` (the search's
    SQLite file), a link or a device (:mod:`prunesched.storage.outputs`).
    """
    pictures = {stem: plots.png(figure) for stem, figure in figures(record).items()}
    for output in [path, *(Path(png_dir) / f"{stem}.png" for stem in pictures if png_dir is not None)]:
        check_output(output, database)  # before the sample images, which take minutes
    if png_dir is not None:
        Path(png_dir).mkdir(parents=True, exist_ok=True)
        for stem, data in pictures.items():
            write_output(Path(png_dir) / f"{stem}.png", data, database)
    samples = ""
    front = record.front()
    if images > 0 and front:
        log(f"generating {images} sample images for the full model and each of {len(front)} front points...")
        samples = _samples_section(record, front, images)
    body = [
        f"<h1>Search {record.id}: {html.escape(record.name)}</h1>",
        (
            f"<p>{record.status}; {len(record.points)} successful evaluations, {record.failed} failed, "
            f"{len(record.generations)} generations; "
            f"objectives: {html.escape(record.objectives[0])} (quality) and {html.escape(record.objectives[1])} (cost), both minimised.</p>"
        ),
        "<h2>Evaluations and fronts</h2><div class='grid'>",
        *(_img(pictures[k], k) for k in ("evaluations", "fronts")),
        "</div>",
        _img(pictures["hypervolume"], "hypervolume"),
        "<h2>Front points</h2>",
        _front_table(record, front),
        "<h2>Baselines</h2>",
        _baselines_table(record),
        _img(pictures["validated"], "validated") if "validated" in pictures else "",
        _refused_table(record),
    ]
    if "schedules" in pictures:
        body += ["<h3>Per-step schedules</h3>", _img(pictures["schedules"], "schedules")]
    body += [samples, "<h2>Configuration</h2>", f"<pre>{html.escape(json.dumps(record.config, indent=2), quote=False)}</pre>"]
    head = f"<meta charset='utf-8'><title>prunesched search {record.id}</title><style>{STYLE}</style>"
    page = f"<!doctype html><html><head>{head}</head><body>{''.join(body)}</body></html>"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_output(path, page.encode("utf-8"), database)


def _img(data: bytes, alt: str) -> str:
    return f"<img alt='{alt}' src='data:image/png;base64,{base64.b64encode(data).decode()}'>"


def _front_table(record: SearchRecord, front: list[Point]) -> str:
    if not front:
        return "<p>No front yet: no generation has finished.</p>"
    head = ["candidate", "born in generation", *record.objectives, "steps full/partial/reuse", "mean prune ratio"]
    rows: list[list[object]] = [
        [p.candidate, p.generation, f"{p.quality:.4g}", f"{p.cost:.4g}", cache_summary(p.schedule), mean_prune(p.schedule)] for p in front
    ]
    return _table(head, rows)


def _table(head: list[str], rows: list[list[object]]) -> str:
    """An HTML table, every cell escaped."""
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + f"</tr>{cells}</table>"


def _baselines_table(record: SearchRecord) -> str:
    if not record.baselines:
        return "<p>This search measured no baselines.</p>"
    quality, cost = record.objectives
    head = [
        "baseline",
        "candidate",
        quality,
        cost,
        "guardrails",
        "nearest searched point (cost <=)",
        f"its {quality}",
        "difference",
        "beaten",
    ]
    rows: list[list[object]] = [
        [
            row.name,
            row.baseline.candidate.id,
            f"{row.baseline.objectives[0]:.4g}",
            f"{row.baseline.objectives[1]:.4g}",
            row.baseline.reason or "kept",
            "-" if row.nearest is None else row.nearest.candidate.id,
            "-" if row.nearest is None else f"{row.nearest.objectives[0]:.4g}",
            "-" if row.difference is None else f"{row.difference:+.4g}",
            "beyond the intervals" if row.dominated else "no",
        ]
        for row in record.baselines
    ]
    return _table(head, rows)


def _refused_table(record: SearchRecord) -> str:
    refused = [p for p in record.points if p.refused]
    if not refused:
        return ""
    head = ["candidate", "baseline", *record.objectives, "why it is kept off every front"]
    rows: list[list[object]] = [[p.candidate, p.baseline or "", f"{p.quality:.4g}", f"{p.cost:.4g}", p.refused] for p in refused]
    return f"<h2>Outside the guardrails ({len(refused)})</h2>" + _table(head, rows)


def _samples_section(record: SearchRecord, front: list[Point], images: int) -> str:
    settings = evaluator_settings(record.config["evaluator"])  # the stored table, validated as at launch
    prompts, full, accelerated = sample_images(settings, [Schedule.from_dict(p.schedule) for p in front], images)
    rows = [("full model", full)] + [
        (f"#{p.candidate}: {record.objectives[0]} {p.quality:.3g}, {record.objectives[1]} {p.cost:.3g}", a)
        for p, a in zip(front, accelerated)
    ]
    lines = "".join(f"<div class='row'><span>{html.escape(label)}</span>{_img(_strip(tensor), label)}</div>" for label, tensor in rows)
    captions = "; ".join(f"{i + 1}. {html.escape(p)}" for i, p in enumerate(prompts))
    return f"<h2>Samples</h2><p>Same prompts and seeds in every row: {captions}</p>{lines}"


def _strip(images: torch.Tensor, scale: int = 2) -> bytes:
    """uint8 (N, 3, H, W) images side by side, upscaled without smoothing, as PNG bytes."""
    buffer = io.BytesIO()
    tile(images, len(images), scale).save(buffer, format="PNG")
    return buffer.getvalue()
