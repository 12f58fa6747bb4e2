"""prunesched: per-step caching and token-pruning schedules for diffusers pipelines.

>>> import prunesched
>>> schedule = prunesched.Schedule.load("schedule.json")
>>> with prunesched.apply(pipe, schedule) as handle:
...     image = pipe("a photo of a cat").images[0]
"""

from prunesched.errors import PruneschedError, ScheduleError, UnsupportedModelError
from prunesched.runtime import (
    DatoConfig,
    PatchHandle,
    RandomConfig,
    Schedule,
    SitoConfig,
    StepPlan,
    StepRecord,
    apply,
    remove,
)

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
