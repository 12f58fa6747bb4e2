"""Random pruning: uniformly random base and pruned tokens with the same similarity recovery (ablation baseline)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from prunesched.runtime.tokens.selection import Half, TokenPlan, normalize, plan_from_score


def random_plan(
    x: Tensor,
    grid: tuple[int, int],
    num_prune: int,
    *,
    patch: int = 2,
    recover_from: Literal["kept", "base"] = "kept",
    align_from: Half | None = None,
    generator: torch.Generator | None = None,
) -> TokenPlan:
    """Plan random pruning of ``num_prune`` tokens of ``x`` ``(B, N, C)``."""
    b, n, _ = x.shape
    draws = torch.rand((2, b, n), generator=generator, device=x.device)
    return plan_from_score(
        normalize(x), draws[0], grid, num_prune, patch=patch, recover_from=recover_from, align_from=align_from, rank=draws[1]
    )
