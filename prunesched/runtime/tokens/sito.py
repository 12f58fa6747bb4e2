"""SiTo (similarity-based token pruning): base tokens are the most "typical" token of each cell."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from prunesched.runtime.tokens.selection import Half, TokenPlan, noisy, normalize, plan_from_score, similarity_score


def sito_plan(
    x: Tensor,
    grid: tuple[int, int],
    num_prune: int,
    *,
    patch: int = 2,
    noise: float = 0.1,
    recover_from: Literal["kept", "base"] = "kept",
    align_from: Half | None = None,
    generator: torch.Generator | None = None,
) -> TokenPlan:
    """Plan SiTo pruning of ``num_prune`` tokens of ``x`` ``(B, N, C)`` laid out on an ``h x w`` grid."""
    xn = normalize(x)
    score = noisy(similarity_score(xn), noise, generator)
    return plan_from_score(xn, score, grid, num_prune, patch=patch, recover_from=recover_from, align_from=align_from)
