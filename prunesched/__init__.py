"""prunesched: per-step caching and token-pruning schedules for diffusers pipelines.

>>> import prunesched
>>> schedule = prunesched.Schedule.load("schedule.json")
>>> with prunesched.apply(pipe, schedule) as handle:
...     image = pipe("a photo of a cat").images[0]

The runtime's names load on first use: reading a search database or a schedule never has to
import torch and diffusers.
"""

from typing import TYPE_CHECKING

from prunesched.errors import PruneschedError, ScheduleError, UnsupportedModelError
from prunesched.lazy import lazy_names

if TYPE_CHECKING:
    from prunesched.runtime import (
        AtedmConfig,
        BlockCache,
        CatConfig,
        DatoConfig,
        PatchHandle,
        PruneLess,
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
    "AtedmConfig",
    "BlockCache",
    "CatConfig",
    "DatoConfig",
    "PatchHandle",
    "PruneLess",
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


__getattr__ = lazy_names(__name__, {name: "prunesched.runtime" for name in __all__ if name not in globals()})
