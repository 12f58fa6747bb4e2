"""Apply a Schedule to a diffusers pipeline. Knows diffusers; knows nothing of search or SQL.

Schedules and methods are plain Python; ``apply``, ``remove``, ``PatchHandle`` and ``StepRecord``
load torch and diffusers on first use.
"""

from typing import TYPE_CHECKING, Any

from prunesched.runtime.methods import METHODS, DatoConfig, RandomConfig, SitoConfig, TokenMethod
from prunesched.runtime.schedule import Schedule, StepPlan

if TYPE_CHECKING:
    from prunesched.runtime.patch import PatchHandle, apply, remove
    from prunesched.runtime.state import StepRecord

__all__ = [
    "METHODS",
    "DatoConfig",
    "PatchHandle",
    "RandomConfig",
    "Schedule",
    "SitoConfig",
    "StepPlan",
    "StepRecord",
    "TokenMethod",
    "apply",
    "remove",
]

_LAZY = {"PatchHandle": "patch", "apply": "patch", "remove": "patch", "StepRecord": "state"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"prunesched.runtime.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'prunesched.runtime' has no attribute {name!r}")
