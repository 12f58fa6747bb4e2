"""The fixed schedules FirstBlockCache, TeaCache and MagCache would run, made from a calibration.

Each of these methods decides at run time, step by step, whether to compute the network: it adds up a
change signal since the last computed step and skips the step while the sum stays below a threshold. On a
calibration (:class:`~prunesched.calibration.document.Calibration`, its signals averaged over prompts)
the same rule gives one fixed schedule per threshold, which a search can evaluate as a baseline like any other
and start its first generation from:

- **FirstBlockCache** (ParaAttention's FBCache, diffusers' ``FirstBlockCacheConfig``, default threshold 0.05):
  the first block's residual change. A skipped step still runs the first block and adds the residual the rest
  produced at the last computed step: a DiT's ``F1B0`` block cache; on a UNet the cheapest partial step,
  DeepCache's branch 0. diffusers compares each step's residual with the last computed step's directly; a
  calibration holds the changes between neighbouring iterations, so the rule adds them up (as TeaCache does).
- **TeaCache**: the model output's change, which TeaCache estimates from its timestep-modulated input with a
  per-model polynomial (here measured, so no polynomial); the first and the last step are always computed.
- **MagCache** (diffusers' ``MagCacheConfig``: threshold 0.06, ``max_skip_steps`` 3, ``retention_ratio`` 0.2):
  the error ``sum |1 - prod ratio|`` of the blocks' residual magnitude ratios since the last computed step; at
  most ``max_skips`` steps in a row are skipped, and the first ``retention`` share of the loop is computed.

TeaCache and MagCache skip the blocks and add their residual from the last computed step: a DiT's ``F0B0`` (the
embeddings and the output layers run at the step's timestep); a UNet, which has no residual stream, reuses its
last output (``"reuse"``). Every rule computes step 0 (there is nothing to reuse yet) and skips only while the
error is strictly below the threshold, so a threshold of 0 gives the full model (diffusers' MagCache also skips at
equality, which only a ratio of exactly 1 could reach).
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass

import numpy as np

from prunesched.calibration.document import Calibration
from prunesched.errors import ConfigError
from prunesched.runtime.methods import TokenMethod, method_from_dict
from prunesched.runtime.schedule import BlockCache, Cache, Schedule, StepPlan

MAGCACHE_MAX_SKIPS = 3
"""diffusers' ``MagCacheConfig.max_skip_steps``: K, the most steps MagCache skips in a row."""
MAGCACHE_RETENTION = 0.2
"""diffusers' ``MagCacheConfig.retention_ratio``: the share of the loop, from its start, that is always computed."""


def retained(n: int) -> int:
    """How many of a loop's ``n`` first iterations MagCache always computes: its retention share, rounded as diffusers
    rounds it, and at least the first iteration."""
    return max(1, int(MAGCACHE_RETENTION * n + 0.5))


Error = Callable[[int, int], float]
"""The accumulated error of skipping iterations ``start`` to ``i`` (both included) since the last computed one."""


@dataclass(frozen=True)
class Rule:
    """One threshold method: its name in tables and baselines, and the thresholds a search tries by default.

    The defaults span the shapes model's range at 20 PNDM steps, from a few skipped steps to most of them.
    """

    label: str
    thresholds: tuple[float, ...]


RULES = {
    "first_block": Rule("FBCache", (0.05, 0.1, 0.2)),
    "teacache": Rule("TeaCache", (0.1, 0.2, 0.4)),
    "magcache": Rule("MagCache", (0.02, 0.06, 0.2)),
}
"""The threshold methods, by the name a ``[calibration] thresholds`` table and ``prunesched calibrate --thresholds`` use."""


def threshold_schedule(calibration: Calibration, rule: str, threshold: float, method: TokenMethod | str = "sito") -> Schedule:
    """The schedule the method ``rule`` (a key of :data:`RULES`) would run at ``threshold`` on this calibration's
    loop, unpruned, with the token method ``method`` (a search space's, so that the space can hold the schedule)."""
    n = calibration.loop_length
    unet = calibration.architecture == "unet"
    skip: Cache = "reuse" if unet else BlockCache(0, 0)  # TeaCache's and MagCache's residual reuse
    computed: Container[int]
    if rule == "first_block":
        error, computed, max_skips, skip = _summed(calibration.mean("first_block")), {0}, n, 0 if unet else BlockCache(1, 0)
    elif rule == "teacache":
        error, computed, max_skips = _summed(calibration.mean("output")), {0, n - 1}, n
    elif rule == "magcache":
        error, computed, max_skips = _magnitude_error(calibration.mean("magnitude_ratio")), range(retained(n)), MAGCACHE_MAX_SKIPS
    else:
        raise ConfigError(f"unknown threshold method {rule!r}; valid: {', '.join(RULES)}")
    skipped = _skipped(error, n, threshold, computed, max_skips)
    token = method if isinstance(method, TokenMethod) else method_from_dict(method)
    return Schedule(steps=tuple(StepPlan(skip if s else "full") for s in skipped), method=token)


def strip(schedule: Schedule) -> str:
    """A schedule in one line, a letter per step: ``F`` full, ``c`` a cached partial step (a branch or block cache),
    ``r`` reused."""
    return "".join("F" if s.cache == "full" else "r" if s.cache == "reuse" else "c" for s in schedule.steps)


def _summed(change: np.ndarray) -> Error:
    """FirstBlockCache's and TeaCache's error: the changes since the last computed iteration, added up."""
    return lambda start, i: float(change[start : i + 1].sum())


def _magnitude_error(ratio: np.ndarray) -> Error:
    """MagCache's error: ``sum |1 - accumulated ratio|`` over the skipped iterations, the ratio multiplied up since
    the last computed one."""
    return lambda start, i: float(np.abs(1 - np.cumprod(ratio[start : i + 1])).sum())


def _skipped(error: Error, length: int, threshold: float, computed: Container[int], max_skips: int) -> list[bool]:
    """Which iterations the rule skips: those not in ``computed`` whose error since the last computed iteration stays
    below ``threshold``, at most ``max_skips`` in a row; every other iteration is computed and starts a new run."""
    skipped, start = [], 0
    for i in range(length):
        skip = i not in computed and i - start < max_skips and error(start, i) < threshold
        skipped.append(skip)
        if not skip:
            start = i + 1
    return skipped
