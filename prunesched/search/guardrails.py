"""Guardrails: bounds on metrics that keep broken schedules off every front, whatever their objectives say.

A search's objectives are one quality number and one cost; a schedule can score well on the
quality number while its images are broken (a fidelity objective measures closeness, not whether
the picture is still what the caption asked for). A guardrail bounds another metric of the same
evaluation, such as the shapes judge's caption accuracy, by a number or by the unaccelerated
model's own value measured the same way (``"full"``: the lower end of its 95 % interval for
``min``, the upper end for ``max``). A candidate outside a guardrail is stored with its violation
and the reason, told to the proposer as a constraint violation (pymoo's ``G``, Optuna's
``constraints_func``), and never stands on a front or goes into an export.

```toml
guardrails = [{ metric = "caption_accuracy", min = "full" }]   # the default on the shapes model
```
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prunesched.checks import check_keys
from prunesched.errors import ConfigError
from prunesched.evaluation.stats import Metrics

FULL = "full"
"""A bound taken from the unaccelerated model's metric, measured by the same evaluator on the same images."""


@dataclass(frozen=True)
class Guardrail:
    """``metric`` must be at least ``min`` and/or at most ``max``: a number, or :data:`FULL`."""

    metric: str
    min: float | str | None = None
    max: float | str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise ConfigError(f"a guardrail needs the name of a metric, got {self.metric!r}")
        if self.min is None and self.max is None:
            raise ConfigError(f"guardrail on {self.metric!r} needs min or max (a number or {FULL!r})")
        for side in ("min", "max"):
            value = getattr(self, side)
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if value is not None and value != FULL and not number:
                raise ConfigError(f"guardrail on {self.metric!r}: {side} must be a finite number or {FULL!r}, got {value!r}")

    def violation(self, metrics: Mapping[str, Any], full: Mapping[str, Any]) -> tuple[float, str | None]:
        """How far ``metrics`` lie outside this guardrail (0: inside) and why, with ``full`` the unaccelerated model's metrics."""
        if self.metric not in metrics:
            raise ConfigError(f"guardrail metric {self.metric!r} is not among the evaluator's metrics: {', '.join(metrics)}")
        value = float(metrics[self.metric]["value"])
        for side, sign in (("min", 1.0), ("max", -1.0)):
            limit = getattr(self, side)
            if limit is None:
                continue
            bound, said = self._bound(limit, side, full)
            if sign * (bound - value) > 0:
                relation = "<" if side == "min" else ">"
                return abs(bound - value), f"{self.metric} {value:.4g} {relation} {bound:.4g} ({said})"
        return 0.0, None

    def _bound(self, limit: float | str, side: str, full: Mapping[str, Any]) -> tuple[float, str]:
        if limit != FULL:
            return float(limit), f"the {side} set"
        if self.metric not in full:
            raise ConfigError(f"guardrail on {self.metric!r} is bounded by the full model's value, but the evaluator measures none for it")
        measured = full[self.metric]
        ci = measured.get("ci")
        if ci is None:
            return float(measured["value"]), "the full model's value"
        end = "lower" if side == "min" else "upper"
        return float(ci[0] if side == "min" else ci[1]), f"the full model's 95% {end} bound, n={measured['n']}"


def guardrails_from_config(value: Any) -> tuple[Guardrail, ...]:
    """The ``guardrails`` list of a search config: tables with ``metric`` and ``min`` and/or ``max``."""
    if not isinstance(value, list):
        raise ConfigError(f"guardrails must be a list of tables like {{ metric = 'caption_accuracy', min = 'full' }}, got {value!r:.80}")
    out = []
    for table in value:
        if not isinstance(table, Mapping):
            raise ConfigError(f"each guardrail must be a table with metric and min or max, got {table!r:.80}")
        check_keys(table, ("metric", "min", "max"), "a guardrail")
        out.append(Guardrail(**table))
    return tuple(out)


def guardrails_to_config(guardrails: Sequence[Guardrail]) -> list[dict[str, Any]]:
    """The ``guardrails`` list :func:`guardrails_from_config` turns back into ``guardrails``."""
    return [{k: v for k, v in (("metric", g.metric), ("min", g.min), ("max", g.max)) if v is not None} for g in guardrails]


def check(guardrails: Sequence[Guardrail], metrics: Metrics, full: Metrics) -> tuple[float, str | None]:
    """The summed violation of every guardrail by ``metrics`` and the reasons, joined (0 and None when all hold)."""
    total, reasons = 0.0, []
    for guardrail in guardrails:
        amount, reason = guardrail.violation(metrics, full)
        total += amount
        if reason is not None:
            reasons.append(reason)
    return total, "; ".join(reasons) or None
