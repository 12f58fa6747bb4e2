"""Baselines: the hand-made schedules every search is measured against, with exactly the candidates' settings.

A front means little until it is set beside what a user would otherwise run: DeepCache's uniform
refresh intervals, uniform token pruning, DaTo's published schedule. The ``[baselines]`` table
names them; the coordinator evaluates them before the first generation on the same workers with
the same evaluator (stored as candidates born in generation -1, with their names), the proposer
starts from those its space holds, and :func:`summary` says, for each, whether the searched front
beats it beyond the intervals and which searched point is nearest at equal or lower cost.

```toml
[baselines]                       # the defaults
enabled = true
deepcache_intervals = [2, 3, 4, 5]  # a full step every N; not for CAT's dato spaces: a DiT has no UNet branches
deepcache_branches = [0, 1]
block_caches = ["F1B0", "F8B0"]   # blocks spaces (DiTs): cache-dit's DBCache presets, at the same intervals
uniform_ratios = [0.3, 0.5, 0.7]  # with the space's token method
dato_ours_b1 = true               # DaTo's Ours-b1, resampled to the loop, when the space's method is dato
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from prunesched.checks import check_number
from prunesched.errors import ConfigError, ScheduleError
from prunesched.runtime.paper_tables import dato_ours_b1
from prunesched.runtime.schedule import BlockCache, Schedule, StepPlan
from prunesched.search.spaces import MAX_STEPS, MAX_VALUES, BlockSpace, Genome, Space, genome_of

DIT_METHODS = ("cat",)
"""Token methods that run on DiTs only: a space with one of them gets no DeepCache baselines (a DiT has no UNet branches)."""
MAX_BRANCH = 64
"""The deepest DeepCache branch index accepted (a UNet has a handful; the model refuses ones it lacks)."""


@dataclass(frozen=True)
class BaselinesConfig:
    """The ``[baselines]`` table: which hand-made schedules a search evaluates beside its candidates (see the module)."""

    enabled: bool = True
    deepcache_intervals: tuple[int, ...] = (2, 3, 4, 5)
    deepcache_branches: tuple[int, ...] = (0, 1)
    block_caches: tuple[str, ...] = ("F1B0", "F8B0")
    uniform_ratios: tuple[float, ...] = (0.3, 0.5, 0.7)
    dato_ours_b1: bool = True

    def __post_init__(self) -> None:
        for name in ("deepcache_intervals", "deepcache_branches", "block_caches", "uniform_ratios"):
            values = getattr(self, name)
            if not isinstance(values, (list, tuple)) or len(values) > MAX_VALUES:
                raise ConfigError(f"[baselines] {name} must be a list of at most {MAX_VALUES} values, got {values!r:.80}")
            object.__setattr__(self, name, tuple(values))
        for interval in self.deepcache_intervals:
            check_number(interval, "deepcache_intervals", "[baselines]", integer=True, low=1, high=MAX_STEPS)
        for branch in self.deepcache_branches:
            check_number(branch, "deepcache_branches", "[baselines]", integer=True, high=MAX_BRANCH)
        for ratio in self.uniform_ratios:
            check_number(ratio, "uniform_ratios", "[baselines]", high=0.99)
        for name in self.block_caches:
            try:
                BlockCache.from_name(name)
            except ScheduleError:
                message = f"[baselines] block_caches must name block caches like F8B0 (first 8 blocks, last 0), got {name!r:.40}"
                raise ConfigError(message) from None
        for name in ("enabled", "dato_ours_b1"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"[baselines] {name} must be true or false, got {getattr(self, name)!r}")

    def schedules(self, space: Space) -> dict[str, Schedule]:
        """The baselines for ``space``'s loop length and token method, by name; a schedule named twice keeps its first name."""
        steps, method = space.steps, space.method
        named: dict[str, Schedule] = {}
        if not self.enabled:
            return named
        blocks = space.kind == BlockSpace.kind
        unet = method.name not in DIT_METHODS and not blocks  # DeepCache's branches are a UNet's
        try:
            for branch in self.deepcache_branches if unet else ():
                for interval in self.deepcache_intervals:
                    named[f"DeepCache N={interval} branch {branch}"] = Schedule.deepcache(steps, interval, branch, method=method)
            for name in self.block_caches if blocks else ():
                for interval in self.deepcache_intervals:
                    cached = BlockCache.from_name(name)
                    named[f"{name} N={interval}"] = Schedule.deepcache(steps, interval, cached, method=method)
            for ratio in self.uniform_ratios:
                named[f"{method.name} uniform {ratio:g}"] = Schedule.uniform(steps, "full", ratio, method=method)
        except ScheduleError as exc:
            raise ConfigError(f"[baselines] make an invalid schedule for the space's method {method.name!r}: {exc}") from None
        if self.dato_ours_b1 and method.name == "dato":
            ours = dato_ours_b1().resample(steps)
            plans = [StepPlan("reuse", 0.0) if p.cache == "reuse" else p for p in ours.steps]  # a reuse step runs nothing to prune
            named["DaTo Ours-b1"] = replace(ours, steps=tuple(plans), method=method)
        return distinct(named)


def distinct(named: dict[str, Schedule]) -> dict[str, Schedule]:
    """``named`` without the schedules named before under another name: each keeps its first name."""
    kept: dict[str, Schedule] = {}
    for name, schedule in named.items():
        if all(schedule.hash != other.hash for other in kept.values()):
            kept[name] = schedule
    return kept


def seed_genomes(space: Space, schedules: Sequence[Schedule]) -> list[Genome]:
    """The genomes of the baselines ``space`` holds (the rest are evaluated but cannot seed its proposer)."""
    return [genome for genome in (genome_of(space, s) for s in schedules) if genome is not None]
