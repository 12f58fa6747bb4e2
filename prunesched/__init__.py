"""prunesched: per-step caching and token-pruning schedules for diffusers pipelines.

>>> import prunesched
>>> schedule = prunesched.Schedule.load("schedule.json")
>>> with prunesched.apply(pipe, schedule) as handle:
...     image = pipe("a photo of a cat").images[0]

The runtime's names load on first use: reading a search database or a schedule never has to
import torch and diffusers.
"""

from typing import TYPE_CHECKING, Any

from prunesched.errors import PruneschedError, ScheduleError, UnsupportedModelError

if TYPE_CHECKING:
    from prunesched.runtime import DatoConfig, PatchHandle, RandomConfig, Schedule, SitoConfig, StepPlan, StepRecord, apply, remove

__version__ = "0.1.0"

__all__ = [
    "DatoConfig",
    "PatchHandle",
    "PruneschedError",
    "RandomConfig",
    "Schedule",
    "ScheduleError",
    "SitoConfig",
    "StepPlan",
    "StepRecord",
    "UnsupportedModelError",
    "apply",
    "remove",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from prunesched import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'prunesched' has no attribute {name!r}")
