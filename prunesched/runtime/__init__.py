"""Apply a Schedule to a diffusers pipeline. Knows diffusers; knows nothing of search or SQL.

Schedules and methods are plain Python; ``apply``, ``remove``, ``PatchHandle`` and ``StepRecord``
load torch and diffusers on first use.
"""

from typing import TYPE_CHECKING

from prunesched.lazy import lazy_names
from prunesched.runtime.methods import METHODS, AtedmConfig, CatConfig, DatoConfig, RandomConfig, SimilarityMethod, SitoConfig, TokenMethod
from prunesched.runtime.schedule import BlockCache, PruneLess, Schedule, StepPlan

if TYPE_CHECKING:
    from prunesched.runtime.patch import PatchHandle, apply, remove
    from prunesched.runtime.state import StepRecord

__all__ = [
    "METHODS",
    "AtedmConfig",
    "BlockCache",
    "CatConfig",
    "DatoConfig",
    "PatchHandle",
    "PruneLess",
    "RandomConfig",
    "Schedule",
    "SimilarityMethod",
    "SitoConfig",
    "StepPlan",
    "StepRecord",
    "TokenMethod",
    "apply",
    "remove",
]

__getattr__ = lazy_names(
    __name__,
    {
        "PatchHandle": "prunesched.runtime.patch",
        "apply": "prunesched.runtime.patch",
        "remove": "prunesched.runtime.patch",
        "StepRecord": "prunesched.runtime.state",
    },
)
