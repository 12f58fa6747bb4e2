"""Checks shared by every config table (search and evaluation), so each refusal reads the same: one line, what is valid."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prunesched.errors import ConfigError


def check_keys(table: Mapping[str, Any], valid: Iterable[str], where: str) -> None:
    """Refuse the first key of ``table`` that is not in ``valid``; ``where`` names the table, e.g. ``[space] of kind 'dato'``."""
    valid = list(valid)
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where}; valid: {', '.join(valid)}")


MAX_SEED = 2**32 - 1
"""The largest seed: numpy's and pymoo's seed range."""


def check_number(
    value: Any, name: str, where: str, *, high: float, integer: bool = False, low: float = 0.0, low_open: bool = False
) -> None:
    """Refuse ``value`` unless it is a number (an integer if asked) from ``low`` (above it if ``low_open``) to ``high``.

    ``high`` is required: every size a config gives is bounded, so a typo such as ``population =
    1000000000`` is one line at load time, not an out-of-memory crash after the search has started.
    """
    ok = isinstance(value, (int,) if integer else (int, float)) and not isinstance(value, bool)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = f"above {_show(low)} and at most {_show(high)}" if low_open else f"from {_show(low)} to {_show(high)}"
        raise ConfigError(f"{where} {name} must be {kind} {bound}, got {value!r}")


def _show(bound: float) -> str:
    """A bound as people write it: ``10,000``, ``0.75``."""
    return f"{int(bound):,}" if float(bound).is_integer() else f"{bound:g}"
