"""DaTo (dynamics-aware token pruning): base tokens are where the features changed most between steps."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from prunesched.runtime.tokens.selection import Half, TokenPlan, noisy, normalize, plan_from_score, similarity_score


def diff_score(previous: Tensor, current: Tensor, grid: tuple[int, int]) -> Tensor:
    """DaTo's DiffScore (Eq. 6): channel-mean absolute change of a ``(B, C, H, W)`` feature, on the token grid.

    The feature map is average-pooled to the slot's ``h x w`` grid when its resolution differs
    (SDXL's first attention level is half the latent resolution). Returns ``(B, h * w)``.
    """
    change = (current - previous).abs().mean(dim=1, keepdim=True)
    if tuple(change.shape[-2:]) != tuple(grid):
        change = F.adaptive_avg_pool2d(change.float(), grid).to(change.dtype)
    return change.flatten(1)


def dato_plan(
    x: Tensor,
    grid: tuple[int, int],
    num_prune: int,
    diff: Tensor | None,
    *,
    patch: int = 2,
    noise: float = 0.1,
    diff_weight: float = 1.0,
    random_sign: bool = False,
    recover_from: Literal["kept", "base"] = "kept",
    align_from: Half | None = None,
    generator: torch.Generator | None = None,
) -> TokenPlan:
    """Plan DaTo pruning of ``num_prune`` tokens of ``x`` ``(B, N, C)``.

    ``diff`` is the ``(B, N)`` DiffScore of this step (see :func:`diff_score`), or ``None``
    before two computed steps exist, in which case SiTo's similarity score is used.
    """
    xn = normalize(x)
    if diff is None:
        score = similarity_score(xn)
    else:
        score = diff_weight * diff.float()
        if random_sign:
            flip = torch.rand((), generator=generator, device=x.device) < 0.5
            score = torch.where(flip, -score, score)
    score = noisy(score, noise, generator)
    return plan_from_score(xn, score, grid, num_prune, patch=patch, recover_from=recover_from, align_from=align_from)
