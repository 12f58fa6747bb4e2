"""The tiny-SD pipeline search the search tests run (random weights, no downloads), with their own overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunesched.search.config import SearchConfig


def tiny_sd_search(cache: Path, evaluator: dict[str, Any] | None = None, **tables: Any) -> SearchConfig:
    """A search of DaTo schedules for the tiny SD pipeline at 4 inference steps on one worker; ``evaluator`` settings
    and top-level ``tables`` replace the defaults' (images, objectives, baselines, proposer...)."""
    config: dict[str, Any] = {
        "name": "tiny-sd",
        "objectives": ["mse", "relative_macs"],
        "space": {"kind": "dato", "steps": 5, "ratios": [0.0, 0.5], "method": {"name": "dato"}},
        "evaluator": {
            "kind": "pipeline",
            "model": "tiny-sd",
            "images": 2,
            "num_inference_steps": 4,
            "cost": ["macs"],
            "cache_dir": str(cache),
            **(evaluator or {}),
        },
        "proposer": {"population": 2, "generations": 1},
        "dispatch": {"workers": 1, "timeout_s": 300},
        **tables,
    }
    return SearchConfig.from_dict(config)
