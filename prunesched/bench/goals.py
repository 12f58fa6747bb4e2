"""The goals the benchmarks share (``bench atedm``, ``bench cat``, ``bench dit``), each with the measured value and whether it is met."""

from __future__ import annotations

from typing import Any


def matches_paper(reduction: float, paper: float, tolerance: float = 0.05) -> dict[str, Any]:
    """A measured value (a MAC reduction, our count over a published one) is within ``tolerance`` (relative) of the
    paper's ``paper`` at the same settings."""
    return {"value": reduction, "goal": f"{paper:.4f} +- {tolerance:.0%} relative", "met": abs(reduction / paper - 1) <= tolerance}


def latency_tracks_macs(latency_reduction: float, mac_reduction: float, share: float = 0.8) -> dict[str, Any]:
    """The measured latency reduction reaches ``share`` of the MAC reduction at the same size, selection overhead included."""
    return {
        "value": latency_reduction / mac_reduction if mac_reduction > 0 else None,  # None: nothing to track (e.g. alpha 1)
        "goal": f">= {share} (at the timed latent)",
        "met": latency_reduction >= share * mac_reduction,
    }
