"""Apply a Schedule to a diffusers pipeline. Knows diffusers; knows nothing of search or SQL."""

from prunesched.runtime.methods import METHODS, DatoConfig, RandomConfig, SitoConfig, TokenMethod
from prunesched.runtime.patch import PatchHandle, apply, remove
from prunesched.runtime.schedule import Schedule, StepPlan
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
