"""Schedules published in the papers, as data, so benchmarks and users can apply them by name."""

from __future__ import annotations

from prunesched.runtime.schedule import Schedule

# DaTo, supplementary Table 6: the "Ours-b1" schedule (SD 1.5, 50 PLMS steps, ImageNet FID 25.40,
# 5.75x on an RTX 4090). Entries are in loop order, i.e. timestep 49 first.
DATO_OURS_B1_CACHE_IDS = (
    1, 1, 1, 1, 1, 1, 1, 1, 12, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 12, 1, 1, 1, 1, 1,
    0, 1, 12, 0, 1, 1, 12, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 12, 1, 1, 1, 1, 1, 0,
)  # fmt: skip
DATO_OURS_B1_RATIOS = (
    0.7, 0.5, 0.4, 0.4, 0.3, 0.5, 0.6, 0.5, 0.6, 0.5, 0.5, 0.3, 0.6, 0.5, 0.5, 0.4, 0.7, 0.3, 0.6, 0.5, 0.5, 0.3, 0.4, 0.3, 0.4,
    0.3, 0.6, 0.5, 0.6, 0.3, 0.6, 0.6, 0.3, 0.3, 0.5, 0.6, 0.4, 0.4, 0.3, 0.4, 0.4, 0.5, 0.3, 0.5, 0.6, 0.7, 0.6, 0.5, 0.6, 0.5,
)  # fmt: skip


def dato_ours_b1(leading_full: bool = True) -> Schedule:
    """DaTo Table 6 "Ours-b1": 51 iterations for diffusers' PNDM at 50 steps (see :meth:`Schedule.from_dato`)."""
    schedule = Schedule.from_dato(DATO_OURS_B1_CACHE_IDS, DATO_OURS_B1_RATIOS, leading_full=leading_full)
    return schedule.with_provenance(source="DaTo (arXiv 2501.00375) supplementary Table 6, Ours-b1")
