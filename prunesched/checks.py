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


def check_number(
    value: Any, name: str, where: str, *, integer: bool = False, low: float = 0.0, high: float | None = None, low_open: bool = False
) -> None:
    """Refuse ``value`` unless it is a number (an integer if asked) in [low, high] (``low_open``: above ``low``)."""
    ok = isinstance(value, (int,) if integer else (int, float)) and not isinstance(value, bool)
    ok = ok and (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = f"> {low:g}" if low_open else f">= {low:g}" if high is None else f"from {low:g} to {high:g}"
        raise ConfigError(f"{where} {name} must be {kind} {bound}, got {value!r}")
