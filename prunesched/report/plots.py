"""The report's pictures, as matplotlib figures: evaluations, fronts, hypervolume, schedule strips, and fronts compared."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from prunesched.report.record import Point, SearchRecord
from prunesched.runtime.schedule import BlockCache, Cache, Schedule, cache_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from prunesched.calibration.document import Calibration


def _figure(width: float = 6.4, height: float = 4.2) -> tuple[Figure, Any]:
    """A figure without pyplot: no global state, no display needed."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots()


def _axes_labels(ax: Any, record: SearchRecord) -> None:
    ax.set_xlabel(f"{record.objectives[1]} (lower is cheaper)")
    ax.set_ylabel(f"{record.objectives[0]} (lower is better)")
    ax.grid(alpha=0.3)


def _staircase(ax: Any, points: Sequence[Point], **style: Any) -> None:
    """A front as the step line that bounds what it dominates."""
    ordered = sorted(points, key=lambda p: p.cost)
    ax.step([p.cost for p in ordered], [p.quality for p in ordered], where="post", **style)


def _baselines(ax: Any, record: SearchRecord) -> None:
    """The baselines as labelled black diamonds (hollow where they break the guardrails)."""
    marks = [p for p in record.points if p.baseline is not None]
    for point in marks:
        face = "none" if point.refused else "black"
        ax.scatter([point.cost], [point.quality], marker="D", s=36, facecolors=face, edgecolors="black", zorder=3)
        ax.annotate(point.baseline, (point.cost, point.quality), fontsize=6, xytext=(4, 3), textcoords="offset points")
    if marks:
        ax.scatter([], [], marker="D", color="black", label="baselines")


def evaluations_plot(record: SearchRecord) -> Figure:
    """Every searched evaluation, coloured by the generation it was born in (grey crosses: outside the guardrails; small
    faint dots: screened out on a few images), the baselines, and the latest front."""
    figure, ax = _figure()
    searched = [p for p in record.points if p.baseline is None and not p.refused and not p.screened_out]
    refused = [p for p in record.points if p.baseline is None and p.refused]
    screened = [p for p in record.points if p.baseline is None and p.screened_out]
    scatter = ax.scatter(
        [p.cost for p in searched],
        [p.quality for p in searched],
        c=[p.generation for p in searched],
        cmap="viridis",
        s=18,
        alpha=0.8,
    )
    if refused:
        ax.scatter([p.cost for p in refused], [p.quality for p in refused], marker="x", color="grey", s=18, label="outside guardrails")
    if screened:
        label = "screened out (few images)"
        ax.scatter([p.cost for p in screened], [p.quality for p in screened], marker=".", color="grey", alpha=0.5, s=10, label=label)
    _baselines(ax, record)
    front = record.front()
    if front:
        _staircase(ax, front, color="crimson", label="latest front")
        ax.scatter([p.cost for p in front], [p.quality for p in front], facecolors="none", edgecolors="crimson", s=60)
    if front or refused or screened or any(p.baseline for p in record.points):
        ax.legend(loc="upper right", fontsize=8)
    figure.colorbar(scatter, ax=ax, label="generation born", ticks=sorted({p.generation for p in searched}))
    ax.set_title(f"search {record.id}: {len(record.points)} evaluations")
    _axes_labels(ax, record)
    return figure


def fronts_plot(record: SearchRecord) -> Figure:
    """The front after each generation: how far the search pushed it, and when (the latest first, earlier ones drawn over it)."""
    from matplotlib import colormaps

    figure, ax = _figure()
    colours = colormaps["viridis"]
    last = max(len(record.generations) - 1, 1)
    for i, generation in reversed(list(enumerate(record.generations))):
        _staircase(
            ax, record.front(generation.number), color=colours(i / last), marker="o", markersize=3, label=f"after {generation.number}"
        )
    _baselines(ax, record)
    if record.generations:
        ax.legend(title="generation", fontsize=8, ncols=2 if len(record.generations) > 8 else 1)
    ax.set_title("Pareto front per generation")
    _axes_labels(ax, record)
    return figure


def validated_plot(record: SearchRecord) -> Figure:
    """The validation's values, each with its quality's 95 % interval: the validated front against the baselines
    (hollow where the validation found a guardrail broken), and the other validated front points of the search."""
    figure, ax = _figure()
    front = {p.candidate for p in record.validated_front}
    quality = record.objectives[0]

    def draw(points: Sequence[Point], **style: Any) -> None:
        intervals = [p.metrics.get(quality, {}).get("ci") or [p.quality, p.quality] for p in points]
        errors = [[p.quality - ci[0] for p, ci in zip(points, intervals)], [ci[1] - p.quality for p, ci in zip(points, intervals)]]
        ax.errorbar([p.cost for p in points], [p.quality for p in points], yerr=errors, linestyle="none", capsize=2, **style)

    searched = [p for p in record.validated if p.baseline is None]
    baselines = [p for p in record.validated if p.baseline is not None]
    if record.validated_front:
        _staircase(ax, record.validated_front, color="crimson", linewidth=1, label="validated front")
    draw([p for p in searched if p.candidate in front], marker="o", color="crimson", label="searched, on the validated front")
    draw([p for p in searched if p.candidate not in front], marker="o", color="grey", alpha=0.6, label="searched, dominated when validated")
    for point in baselines:
        face = "none" if point.refused else "black"
        draw([point], marker="D", color="black", markerfacecolor=face)
        ax.annotate(point.baseline, (point.cost, point.quality), fontsize=6, xytext=(4, 3), textcoords="offset points")
    if baselines:
        ax.scatter([], [], marker="D", color="black", label="baselines")
    n = max((p.metrics.get(quality, {}).get("n", 0) for p in record.validated), default=0)
    ax.set_title(f"search {record.id}, validated on {n} new images per point")
    ax.legend(loc="upper right", fontsize=8)
    _axes_labels(ax, record)
    return figure


def hypervolume_plot(record: SearchRecord) -> Figure:
    """Hypervolume of the front against the evaluations spent."""
    figure, ax = _figure(6.4, 3.2)
    stored = [g for g in record.generations if g.hypervolume is not None]
    ax.plot([g.evaluations for g in stored], [g.hypervolume for g in stored], "o-")
    ax.set_xlabel("evaluations finished")
    ax.set_ylabel("hypervolume")
    ax.set_title("hypervolume over evaluations")
    ax.grid(alpha=0.3)
    return figure


def strips_plot(points: Sequence[Point]) -> Figure:
    """Each front point's schedule as a strip: the cache choice per step (and its forecast order) as colour, the prune ratio
    as a line over it."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    schedules = [Schedule.from_dict(p.schedule).steps for p in points]
    kinds = sorted({(s.cache, s.forecast) for plans in schedules for s in plans}, key=lambda kind: (_cache_order(kind[0]), kind[1]))
    choices = [cache_label(cache, forecast) for cache, forecast in kinds]
    colors = [colormaps["Blues_r"](0.1 + 0.75 * i / max(len(choices) - 1, 1)) for i in range(len(choices))]
    palette = ListedColormap(colors)
    steps = max((len(plans) for plans in schedules), default=1)
    figure, ax = _figure(8, 0.5 + 0.45 * max(len(points), 1))
    for row, plans in enumerate(schedules):
        codes = [[choices.index(cache_label(s.cache, s.forecast)) for s in plans]]
        ax.imshow(
            codes,
            cmap=palette,
            vmin=0,
            vmax=max(len(choices) - 1, 1),
            aspect="auto",
            extent=(-0.5, len(plans) - 0.5, row + 0.45, row - 0.45),
        )
        ax.plot(range(len(plans)), [row + 0.4 - 0.8 * s.prune for s in plans], color="black", linewidth=1.2)
    ax.set_xlim(-0.5, steps - 0.5)
    ax.set_ylim(len(points) - 0.5, -0.5)
    ax.set_yticks(range(len(points)), [f"#{p.candidate}" for p in points])
    ax.set_xlabel("loop iteration (black line: prune ratio, 0 at the bottom of a strip, 1 at the top)")
    handles = [Patch(color=color, label=c) for color, c in zip(colors, choices)]
    figure.legend(handles=handles, loc="outside upper center", ncols=len(choices), fontsize=8)
    return figure


def _cache_order(cache: Cache) -> tuple[int, int]:
    """full first, then partial steps from the most computed (deepest branch, most blocks), then reuse: darkest to lightest."""
    if isinstance(cache, (int, BlockCache)):
        return (1, -BlockCache.of(cache).computed)
    return (0 if cache == "full" else 2, 0)


def compare_plot(records: Sequence[SearchRecord]) -> Figure:
    """The latest front of each search in one plot."""
    figure, ax = _figure()
    for record in records:
        front = record.front()
        _staircase(ax, front, marker="o", markersize=4, label=f"#{record.id} {record.name} ({len(front)} points)")
    ax.legend(fontsize=8)
    ax.set_title("fronts compared")
    _axes_labels(ax, records[0])
    return figure


def calibration_plot(calibration: Calibration) -> Figure:
    """A calibration's heat map: each block's relative change (mean over the prompts) at every loop iteration after the
    first, blocks in the order their forward ends; on a UNet each DeepCache branch is named beside the block it reads."""
    changes = calibration.mean("blocks")[1:].T  # (blocks, iterations 1..n-1)
    reads = {block: [b for b, name in enumerate(calibration.branches) if name == block] for block in calibration.blocks}
    labels = [f"{block} (branch {', '.join(map(str, reads[block]))})" if reads[block] else block for block in calibration.blocks]
    figure, ax = _figure(8, 1.2 + 0.28 * len(labels))
    image = ax.imshow(changes, aspect="auto", cmap="viridis", extent=(0.5, calibration.loop_length - 0.5, len(labels) - 0.5, -0.5))
    figure.colorbar(image, ax=ax, label="relative L1 change from the previous iteration")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("loop iteration")
    ax.set_title(
        f"{calibration.model}: {calibration.num_inference_steps} steps of {calibration.scheduler}, {len(calibration.prompts)} prompts"
    )
    return figure


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
