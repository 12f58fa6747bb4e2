"""The Schedule: per denoising-loop iteration, how deep to recompute and how many tokens to prune.

A schedule is the contract between the search and the runtime. It is stored as a versioned
JSON document (never pickle); ``docs/schedule.schema.json`` is its JSON Schema.

``steps[i]`` governs iteration ``i`` of the pipeline's denoising loop, i.e. position ``i`` of the
scheduler's ``timesteps`` after ``set_timesteps`` (PNDM at 50 steps has 51 positions; img2img
starts part-way in).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from prunesched.errors import ScheduleError
from prunesched.files import read_text
from prunesched.runtime.methods import METHODS, TokenMethod, method_from_dict

FORMAT = "prunesched.schedule"
VERSION = 1


@dataclass(frozen=True)
class BlockCache:
    """A DiT step that computes the first ``first`` and the last ``last`` transformer blocks and adds the residual
    the blocks between them produced at the last full step (the Δ-DiT / DBCache idea).

    Written ``{"first": F, "last": B}`` in a schedule document; ``str`` gives cache-dit's name, ``F2B1``.
    A DiT step with an integer cache ``b`` means ``BlockCache(b + 1, b + 1)`` (see :meth:`of`).
    """

    first: int
    last: int

    def __post_init__(self) -> None:
        for key in ("first", "last"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ScheduleError(f"block cache {key!r} must be an integer >= 0 (a count of transformer blocks), got {value!r}")

    def __str__(self) -> str:
        return f"F{self.first}B{self.last}"

    @property
    def computed(self) -> int:
        """How many transformer blocks the step computes."""
        return self.first + self.last

    def to_dict(self) -> dict[str, int]:
        return {"first": self.first, "last": self.last}

    @classmethod
    def from_name(cls, name: str) -> BlockCache:
        """The block cache named ``FnBm`` (the inverse of ``str``)."""
        match = re.fullmatch(r"F(\d+)B(\d+)", name) if isinstance(name, str) else None
        if match is None:
            raise ScheduleError(f"{name!r} is not a block cache name; valid names are like F8B0 (first 8 blocks, last 0)")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def of(cls, cache: int | BlockCache) -> BlockCache:
        """The blocks a DiT step computes: an integer depth ``b`` mirrors DeepCache's U (the first and the last ``b + 1``)."""
        return cache if isinstance(cache, BlockCache) else cls(cache + 1, cache + 1)


Cache = str | int | BlockCache
"""``"full"``, ``"reuse"``, a cache depth (an int >= 0; 0 is the shallowest, cheapest: a UNet's DeepCache branch,
a DiT's first and last block) or a DiT's :class:`BlockCache`."""


FORECAST_ORDERS = (0, 1, 2)
"""The orders a step's ``forecast`` may have: 0 copies the cached features, 1 and 2 extrapolate them (TaylorSeer, FoCa)."""


def cache_label(cache: Cache, forecast: int = 0) -> str:
    """How tables and plots name a cache choice: ``full``, ``reuse``, ``branch 0`` (an integer depth), ``F8B0``; a
    forecast step adds its order: ``branch 0 +f1``, ``reuse +f2``."""
    name = f"branch {cache}" if isinstance(cache, int) else str(cache)
    return f"{name} +f{forecast}" if forecast else name


_DATO_CACHE: dict[int, Cache] = {0: "reuse", 1: 0}
"""DaTo's cache ids: 0 reuses the previous output, 1 is DeepCache's shallowest branch; any other id is a full step."""

SLOT_KEYWORDS = ("highest-resolution", "all")
"""``"highest-resolution"``: self-attention of every transformer block at the highest-resolution
level that has any (the default; on SDXL that is not the first level). ``"all"``: every
transformer block's self-attention."""

Slots = str | tuple[str, ...]


@dataclass(frozen=True)
class StepPlan:
    """What one iteration of the denoising loop does.

    Attributes:
        cache: ``"full"`` computes the whole network and refreshes the cache; an int b recomputes
            only the shallow part of the network and takes the rest from the cache (a UNet's DeepCache
            ``cache_branch_id``; on a DiT the first and last b + 1 blocks); a :class:`BlockCache`
            names a DiT's first and last blocks explicitly; ``"reuse"`` skips the network and
            reuses the previous output.
        prune: fraction of *all* N tokens of each pruning slot that is removed before
            self-attention in this iteration (``N - int(prune * N)`` tokens are attended).
        forecast: how a cache or reuse step gets what it does not compute: 0 copies the cached features
            (DeepCache, DaTo's 0), 1 and 2 extrapolate them from their last 2 or 3 computed values with the
            polynomial of that order in the loop index (TaylorSeer, FoCa). A full step computes everything: 0.
    """

    cache: Cache = "full"
    prune: float = 0.0
    forecast: int = 0

    def __post_init__(self) -> None:
        if type(self.prune) is int:  # canonical: a JSON 0 and 0.0 are the same ratio and hash the same
            object.__setattr__(self, "prune", float(self.prune))

    def to_dict(self) -> dict[str, Any]:
        """The step's document; ``forecast`` only when it is not 0, so schedules without it keep their documents and hashes."""
        cache = self.cache.to_dict() if isinstance(self.cache, BlockCache) else self.cache
        return {"cache": cache, "prune": self.prune, **({"forecast": self.forecast} if self.forecast else {})}


@dataclass(frozen=True)
class PruneLess:
    """DSAP's prune-less schedule (AT-EDM §3.3): some attention blocks do not prune in the first iterations.

    Early attention maps are nearly uniform and rank tokens poorly, and some blocks matter more to
    the image than others, so for the first ``steps`` loop iterations the attention blocks in
    ``blocks`` prune nothing; every method honours it. ``blocks="dsap"`` (default) is the paper's
    set: the first attention block of each down stage and the last of each up stage (never the
    mid block); otherwise a list of attention-block names such as ``down_blocks.1.attentions.0``.
    """

    steps: int
    blocks: Slots = "dsap"

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 0:
            raise ScheduleError(f"prune_less steps must be an integer >= 0, got {self.steps!r}")
        if isinstance(self.blocks, str):
            if self.blocks != "dsap":
                raise ScheduleError(f"prune_less blocks must be 'dsap' or a list of attention-block names, got {self.blocks!r}")
        elif not self.blocks or not all(isinstance(b, str) and b for b in self.blocks):
            raise ScheduleError(f"prune_less blocks must be 'dsap' or a non-empty list of attention-block names, got {self.blocks!r}")
        else:
            object.__setattr__(self, "blocks", tuple(self.blocks))

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "blocks": self.blocks if isinstance(self.blocks, str) else list(self.blocks)}

    @classmethod
    def from_dict(cls, data: Any) -> PruneLess:
        if not isinstance(data, dict) or set(data) - {"steps", "blocks"} or "steps" not in data:
            raise ScheduleError(f"'prune_less' must be an object with 'steps' and optionally 'blocks', got {data!r:.80}")
        blocks = data.get("blocks", "dsap")
        return cls(data["steps"], blocks if isinstance(blocks, str) else _slot_list(blocks))


@dataclass(frozen=True)
class Schedule:
    """A per-iteration acceleration plan for one pipeline configuration.

    Build one with :meth:`uniform`, :meth:`deepcache`, :meth:`cat`, :meth:`from_dato`, :meth:`load` or :meth:`load_dato`;
    apply it with :func:`prunesched.apply`.
    """

    steps: tuple[StepPlan, ...]
    method: TokenMethod = field(default_factory=lambda: METHODS["sito"]())
    slots: Slots = "highest-resolution"
    provenance: Mapping[str, Any] = field(default_factory=dict)
    prune_less: PruneLess | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        object.__setattr__(self, "provenance", MappingProxyType(dict(self.provenance)))
        if not isinstance(self.slots, str):
            object.__setattr__(self, "slots", tuple(self.slots))
        _validate(self)

    def __len__(self) -> int:
        return len(self.steps)

    def __hash__(self) -> int:
        return hash(self.hash)

    @property
    def prunes(self) -> bool:
        """Whether any step prunes tokens."""
        return any(s.prune > 0 for s in self.steps)

    @property
    def forecast(self) -> int:
        """The highest forecast order of any step: the runtime keeps the last ``forecast + 1`` values of every cached tensor."""
        return max(s.forecast for s in self.steps)

    # -- constructors --------------------------------------------------------------------------

    @classmethod
    def uniform(cls, steps: int, cache: Cache = "full", prune: float = 0.0, method: str | TokenMethod = "sito") -> Schedule:
        """The same plan at every iteration (the first iteration is always computed in full at run time)."""
        _check_step_count(steps)
        return cls(steps=(StepPlan(cache, prune),) * steps, method=_method(method))

    @classmethod
    def deepcache(
        cls,
        steps: int,
        interval: int = 3,
        branch: Cache = 0,
        prune: float = 0.0,
        method: str | TokenMethod = "sito",
        forecast: int = 0,
    ) -> Schedule:
        """DeepCache's uniform schedule: a full iteration every ``interval`` iterations, ``branch`` between (a UNet's
        branch id, a DiT's depth or :class:`BlockCache`: with ``BlockCache(1, 0)`` it is cache-dit's DBCache F1B0
        with a fixed compute mask; or ``"reuse"``), each of those steps with the ``forecast`` order."""
        _check_step_count(steps)
        if not isinstance(interval, int) or interval < 1:
            raise ScheduleError(f"interval must be an integer >= 1, got {interval!r}")
        plans = tuple(StepPlan("full", prune) if i % interval == 0 else StepPlan(branch, prune, forecast) for i in range(steps))
        return cls(steps=plans, method=_method(method))

    @classmethod
    def cat(cls, steps: int, t0: int = 8, alpha: float = 0.3, method: str | TokenMethod = "cat") -> Schedule:
        """CAT pruning's schedule for a DiT (SD3, PixArt-Σ): ``t0`` full steps, then every step recomputes a
        fraction ``alpha`` of the image tokens (``prune = 1 - alpha``). The paper's setting: 28 steps, t0 8, alpha 0.3."""
        _check_step_count(steps)
        if not isinstance(t0, int) or isinstance(t0, bool) or not 0 <= t0 <= steps:
            raise ScheduleError(f"t0 must be an integer from 0 to the step count {steps}, got {t0!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
            raise ScheduleError(f"alpha, the fraction of image tokens recomputed, must be in (0, 1], got {alpha!r}")
        prune = round(1 - alpha, 6)  # 0.7, not 0.7000000000000001
        return cls(steps=tuple(StepPlan("full", 0.0 if i < t0 else prune) for i in range(steps)), method=_method(method))

    @classmethod
    def from_dato(
        cls,
        cache_ids: Sequence[int],
        ratios: Sequence[float],
        method: str | TokenMethod = "dato",
        leading_full: bool = True,
    ) -> Schedule:
        """Import a DaTo table: cache ids ``{0, 1, 12}`` and one prune ratio per entry.

        Cache id 0 skips the UNet and reuses the previous output (``"reuse"``), 1 is DeepCache's
        shallowest branch (branch 0) and 12 (any id >= 2, as in the released code) is a full
        step. The released code always computes UNet call 0 in full and lets entry k govern
        call k + 1, so a 50-entry PLMS table covers the 51 iterations of diffusers' PNDM loop:
        ``leading_full=True`` (default) prepends that full, unpruned iteration. Pass
        ``leading_full=False`` for samplers whose loop has exactly one iteration per entry.
        """
        if len(cache_ids) != len(ratios):
            raise ScheduleError(f"DaTo table has {len(cache_ids)} cache ids but {len(ratios)} prune ratios; they must have the same length")
        plans = [StepPlan("full", 0.0)] if leading_full else []
        for i, (cache_id, ratio) in enumerate(zip(cache_ids, ratios)):
            if not isinstance(cache_id, int) or isinstance(cache_id, bool) or cache_id < 0:
                raise ScheduleError(f"DaTo cache id at entry {i} is {cache_id!r}; valid ids are 0 (reuse), 1 (branch 0), 12 (full)")
            plans.append(StepPlan(_DATO_CACHE.get(cache_id, "full"), ratio))
        return cls(steps=tuple(plans), method=_method(method))

    def to_dato(self, leading_full: bool = True) -> tuple[list[int], list[float]]:
        """Export to DaTo's numeric table (inverse of :meth:`from_dato`); only reuse/branch 0/full steps exist there."""
        if leading_full and self.steps[0] != StepPlan("full", 0.0):
            raise ScheduleError(f"leading_full expects step 0 to be a full unpruned step, got {self.steps[0]}; pass leading_full=False")
        steps = self.steps[1:] if leading_full else self.steps
        ids = []
        for i, step in enumerate(steps):
            if step.cache not in ("reuse", 0, "full"):
                raise ScheduleError(f"step {i} uses cache {step.cache!r}, which a DaTo table cannot express; valid: reuse, 0, full")
            if step.forecast:
                raise ScheduleError(f"step {i} forecasts at order {step.forecast}, which a DaTo table cannot express; valid: forecast 0")
            ids.append({"reuse": 0, 0: 1, "full": 12}[step.cache])
        return ids, [s.prune for s in steps]

    # -- transformations ------------------------------------------------------------------------

    def resample(self, steps: int) -> Schedule:
        """The same schedule stretched or squeezed to ``steps`` iterations.

        Iteration j takes the plan of the original iteration nearest to the same relative
        position of the loop, so the first and last plans are kept. This is an explicit choice
        of the caller: applying a schedule of the wrong length is otherwise an error.
        """
        _check_step_count(steps)
        old = len(self.steps)
        index = [0] * steps if steps == 1 or old == 1 else [math.floor(j * (old - 1) / (steps - 1) + 0.5) for j in range(steps)]
        provenance = {**self.provenance, "resampled_from": old}
        prune_less = self.prune_less and replace(self.prune_less, steps=math.floor(self.prune_less.steps * steps / old + 0.5))
        return replace(self, steps=tuple(self.steps[i] for i in index), provenance=provenance, prune_less=prune_less)

    def with_provenance(self, **info: Any) -> Schedule:
        """A copy whose provenance is extended with ``info``."""
        return replace(self, provenance={**self.provenance, **info})

    # -- serialization --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The schedule document as plain JSON-compatible data."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "method": self.method.to_dict(),
            "slots": self.slots if isinstance(self.slots, str) else list(self.slots),
            "steps": [s.to_dict() for s in self.steps],
            **({"prune_less": self.prune_less.to_dict()} if self.prune_less else {}),
            "provenance": dict(self.provenance),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @property
    def hash(self) -> str:
        """SHA-256 of the canonical document without provenance: equal for schedules that act the same."""
        body = self.to_dict()
        del body["provenance"]
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: Any) -> Schedule:
        """Validate a parsed schedule document and build the Schedule it describes."""
        if not isinstance(data, dict):
            raise ScheduleError(f"a schedule document must be a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise ScheduleError(f"'format' must be {FORMAT!r}, got {data.get('format')!r}")
        version = data.get("version")
        if version != VERSION:
            raise ScheduleError(f"schedule version {version!r} is not supported; this prunesched reads version {VERSION}")
        fields = ("format", "version", "method", "slots", "steps", "prune_less", "provenance")
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ScheduleError(f"unknown schedule field {unknown[0]!r}; valid fields: {', '.join(fields)}")
        if "steps" not in data:
            raise ScheduleError('schedule has no \'steps\'; it needs a list of {"cache": ..., "prune": ...} objects')
        steps = data["steps"]
        if not isinstance(steps, list):
            raise ScheduleError(f"'steps' must be a list of step objects, got {type(steps).__name__}")
        provenance = data.get("provenance", {})
        if not isinstance(provenance, dict):
            raise ScheduleError(f"'provenance' must be an object, got {type(provenance).__name__}")
        slots = data.get("slots", "highest-resolution")
        return cls(
            steps=tuple(_step_from_dict(i, s) for i, s in enumerate(steps)),
            method=method_from_dict(data.get("method", "sito")),
            slots=slots if isinstance(slots, str) else _slot_list(slots),
            provenance=provenance,
            prune_less=None if data.get("prune_less") is None else PruneLess.from_dict(data["prune_less"]),
        )

    @classmethod
    def from_json(cls, text: str) -> Schedule:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScheduleError(f"schedule is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> Schedule:
        """Read a schedule document (see :meth:`save`); a DaTo table is read with :meth:`load_dato`."""
        text = read_text(path, "schedule file", ScheduleError)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            hint = "; it holds two lines of numbers, a DaTo table: read it with Schedule.load_dato" if _number_rows(text) else ""
            raise ScheduleError(
                f"schedule file {str(path)!r} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}){hint}"
            ) from None
        except (ValueError, RecursionError) as exc:  # e.g. an integer too long to convert, nesting too deep
            raise ScheduleError(
                f"schedule file {str(path)!r} is JSON that cannot be read ({type(exc).__name__}); "
                "write a schedule document (docs/schedule.md)"
            ) from None
        if isinstance(data, dict) and "cache_ids" in data:
            raise ScheduleError(f"schedule file {str(path)!r} is a DaTo table, not a schedule document: read it with Schedule.load_dato")
        return cls.from_dict(data)

    @classmethod
    def load_dato(cls, path: str | Path, method: str | TokenMethod = "dato", leading_full: bool = True) -> Schedule:
        """Read a DaTo table file (see :meth:`from_dato`): JSON ``{"cache_ids": [...], "ratios": [...], "method": ...}``,
        or two lines of numbers as the paper prints them, cache ids then prune ratios. A JSON table's
        ``method`` (a name or a method object) takes the place of ``method``."""
        text = read_text(path, "DaTo table file", ScheduleError)
        rows = _number_rows(text)
        if rows is not None:
            return cls.from_dato([int(v) for v in rows[0]], rows[1], method, leading_full)
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
            data = None
        if not isinstance(data, dict) or "cache_ids" not in data:
            raise ScheduleError(
                f"file {str(path)!r} is not a DaTo table: two lines of numbers (cache ids, then prune ratios) or "
                'JSON {"cache_ids": [...], "ratios": [...]}; a schedule document is read with Schedule.load'
            )
        if set(data) - {"cache_ids", "ratios", "method"} or "ratios" not in data:
            raise ScheduleError(f"a DaTo table holds 'cache_ids', 'ratios' and optionally 'method'; got keys {sorted(data)}")
        if not (isinstance(data["cache_ids"], list) and isinstance(data["ratios"], list)):
            raise ScheduleError("a DaTo table's 'cache_ids' and 'ratios' must be lists of numbers, one entry per step")
        return cls.from_dato(data["cache_ids"], data["ratios"], data.get("method", method), leading_full)

    def save(self, path: str | Path) -> None:
        """Write the schedule document as JSON, all or nothing: a crash mid-write leaves any older file whole."""
        target = Path(path)
        partial = target.with_name(f".{target.name}.partial")
        try:
            partial.write_text(self.to_json() + "\n", encoding="utf-8")
            partial.replace(target)
        except OSError as exc:
            raise ScheduleError(f"cannot write schedule file {str(path)!r}: {exc.strerror}") from None


def _number_rows(text: str) -> tuple[list[float], list[float]] | None:
    """Two lines of numbers (separated by spaces or commas, brackets allowed), or None if the text is not that."""
    lines = [line.strip().strip("[]") for line in text.splitlines() if line.strip()]
    try:
        rows = [[float(v) for v in line.replace(",", " ").split()] for line in lines]
    except ValueError:
        return None
    if len(rows) != 2 or not all(v.is_integer() for v in rows[0]):
        return None
    return rows[0], rows[1]


def _method(method: str | TokenMethod) -> TokenMethod:
    return method if isinstance(method, TokenMethod) else method_from_dict(method)


def _check_step_count(steps: Any) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ScheduleError(f"step count must be an integer >= 1, got {steps!r}")


def _step_from_dict(i: int, data: Any) -> StepPlan:
    if not isinstance(data, dict):
        raise ScheduleError(f'step {i} must be an object like {{"cache": "full", "prune": 0.5}}, got {data!r}')
    unknown = sorted(set(data) - {"cache", "prune", "forecast"})
    if unknown:
        raise ScheduleError(f"step {i} has unknown field {unknown[0]!r}; valid fields: cache, prune, forecast")
    cache = data.get("cache", "full")
    if isinstance(cache, dict):
        if set(cache) != {"first", "last"}:
            raise ScheduleError(f'step {i}: a block cache is an object {{"first": F, "last": B}}, got {cache!r:.80}')
        cache = BlockCache(cache["first"], cache["last"])
    return StepPlan(cache=cache, prune=data.get("prune", 0.0), forecast=data.get("forecast", 0))


def _slot_list(slots: Any) -> tuple[str, ...]:
    if not isinstance(slots, list) or not slots or not all(isinstance(s, str) for s in slots):
        raise ScheduleError(f"'slots' must be one of {list(SLOT_KEYWORDS)} or a non-empty list of module names, got {slots!r}")
    return tuple(slots)


def _validate(schedule: Schedule) -> None:
    if not schedule.steps:
        raise ScheduleError("schedule has no steps; it needs one step per iteration of the denoising loop")
    if not isinstance(schedule.method, TokenMethod):
        raise ScheduleError(f"method must be one of {sorted(METHODS)}, got {schedule.method!r}")
    if schedule.prune_less is not None and not isinstance(schedule.prune_less, PruneLess):
        raise ScheduleError(f"prune_less must be a PruneLess, got {schedule.prune_less!r}")
    if isinstance(schedule.slots, str) and schedule.slots not in SLOT_KEYWORDS:
        raise ScheduleError(f"unknown slots {schedule.slots!r}; valid: {', '.join(SLOT_KEYWORDS)} or a list of module names")
    limit = schedule.method.max_prune
    for i, step in enumerate(schedule.steps):
        if not isinstance(step, StepPlan):
            raise ScheduleError(f"step {i} must be a StepPlan, got {step!r}")
        cache = step.cache
        valid_int = isinstance(cache, int) and not isinstance(cache, bool) and cache >= 0
        if not (valid_int or isinstance(cache, BlockCache) or cache in ("full", "reuse")):
            raise ScheduleError(
                f"step {i}: unknown cache value {cache!r}; valid: 'full', 'reuse', a cache depth >= 0 or a DiT block cache "
                '{"first": F, "last": B}'
            )
        prune = step.prune
        if isinstance(prune, bool) or not isinstance(prune, (int, float)) or not 0.0 <= prune <= limit:
            raise ScheduleError(f"step {i}: prune ratio {prune!r} is out of range; {schedule.method.describe_limit()}")
        orders = ", ".join(map(str, FORECAST_ORDERS))
        if type(step.forecast) is not int or step.forecast not in FORECAST_ORDERS:
            raise ScheduleError(f"step {i}: forecast {step.forecast!r} is not an order; valid: {orders} (0 copies the cache)")
        if step.forecast and cache == "full":
            raise ScheduleError(f"step {i}: a full step computes everything and forecasts nothing; valid: forecast 0 on full steps")
