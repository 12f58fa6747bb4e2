"""Forecast steps: a cached value extrapolated from its last computed values instead of copied (TaylorSeer, FoCa).

Every cached value of the runtime (a UNet's DeepCache features, a DiT's cached span boundaries, the
network's output for reuse steps) is kept as :data:`Points`: its last computed values, each with the
loop position that computed it. A step of forecast order k reads the polynomial of degree k through
the last k + 1 of them at its own position; order 0 reads the last value itself, bit for bit what a
plain cache returns. Only a schedule with forecast steps keeps more than one value (``keep``).

Positions are 0-d tensors when the schedule forecasts, so compiled code computes the weights in its
graph instead of specialising on the loop index (one graph per kind of step, not per step), and
None otherwise: then nothing reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Points = list[tuple[Any, Any]]
"""``(position, value)`` pairs, oldest first; a value is a tensor or a tuple of them (and None), as a module returns it."""


def remember(points: Points | None, position: Any, value: Any, keep: int) -> Points:
    """``points`` with ``(position, value)`` appended, only the last ``keep`` kept."""
    return [*(points or ()), (position, value)][-keep:]


def recall(points: Points, position: Any, order: int) -> Any:
    """The value at ``position``: the last one at order 0, else extrapolated through the last ``order + 1`` points.

    The caller makes sure ``points`` holds that many (the runtime lowers the order while fewer full steps have run).
    """
    if order == 0:
        return points[-1][1]
    return extrapolate(points[-order - 1 :], position)


def extrapolate(points: Sequence[tuple[Any, Any]], position: Any) -> Any:
    """The polynomial through ``points`` (position, value), of degree ``len(points) - 1``, evaluated at ``position``.

    The Lagrange form of Newton's divided-difference polynomial: ``sum_j w_j f_j`` with
    ``w_j = prod_{m != j} (position - x_m) / (x_j - x_m)``, so each value is read once and the
    positions may be unevenly spaced; with two points it is
    ``f_1 + (f_1 - f_0) (position - x_1) / (x_1 - x_0)``. Positions are numbers or 0-d tensors alike;
    values are tensors, or tuples of tensors (and None) combined element by element.
    """
    weights = []
    for j, (x_j, _) in enumerate(points):
        weight: Any = 1.0
        for m, (x_m, _) in enumerate(points):
            if m != j:
                weight = weight * (position - x_m) / (x_j - x_m)
        weights.append(weight)
    return _combine(weights, [value for _, value in points])


def _combine(weights: list[Any], values: list[Any]) -> Any:
    """``sum_j weights[j] * values[j]``, through tuples (a down block's ``(hidden, skips)``) and Nones (no text stream)."""
    first = values[0]
    if first is None:
        return None
    if isinstance(first, tuple):
        return tuple(_combine(weights, list(parts)) for parts in zip(*values))
    total = first * weights[0]
    for weight, value in zip(weights[1:], values[1:]):
        total = total + value * weight
    return total
