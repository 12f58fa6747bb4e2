"""Pruning and recovery shared by every similarity-recovery method (SiTo, DaTo, random).

Given base tokens (one per s x s cell) this module chooses which non-base tokens to prune and
where each pruned token copies its attention output from. Everything is batched tensor work
with no Python loop over tokens and no host synchronisation; the number of pruned tokens is a
Python int, so all shapes are known on the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor


@dataclass(frozen=True)
class TokenPlan:
    """Which tokens enter self-attention and how the full sequence is recovered afterwards.

    Attributes:
        kept: ``(B, N - K)`` indices of the tokens that are attended, ascending.
        source: ``(B, N)`` for every token, the position in ``kept`` whose output it takes
            (a kept token takes its own output).
    """

    kept: Tensor
    source: Tensor

    @property
    def num_kept(self) -> int:
        return self.kept.shape[1]

    def gather(self, x: Tensor) -> Tensor:
        """``(B, N, C) -> (B, N - K, C)``: the attended tokens."""
        return x.gather(1, self.kept.unsqueeze(-1).expand(-1, -1, x.shape[-1]))

    def recover(self, y: Tensor) -> Tensor:
        """``(B, N - K, C) -> (B, N, C)``: every token gets the output of its source."""
        return y.gather(1, self.source.unsqueeze(-1).expand(-1, -1, y.shape[-1]))


def normalize(x: Tensor) -> Tensor:
    """Unit-length tokens, so that dot products are cosine similarities."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-6)


def similarity_score(xn: Tensor) -> Tensor:
    """SiTo's SimScore: for each token, the sum of its cosine similarities to all tokens.

    ``sum_j cos(x_i, x_j) = x̂_i · sum_j x̂_j``, so this costs O(N C) instead of building the
    N x N cosine graph the public code materialises; the values are the same. Computed in float32
    (see :func:`noisy`).
    """
    xn = xn.float()
    return (xn @ xn.sum(dim=1, keepdim=True).transpose(1, 2)).squeeze(-1)


def cell_argmax(score: Tensor, grid: tuple[int, int], patch: int) -> Tensor:
    """``(B, N) -> (B, cells)``: per s x s cell of the ``h x w`` token grid, the index of the top-scoring token.

    Grids whose sides are not multiples of ``patch`` get smaller cells at the right and bottom
    edges, so every token belongs to exactly one cell.
    """
    b = score.shape[0]
    h, w = grid
    hc, wc = -(-h // patch), -(-w // patch)
    padded = score.new_full((b, hc * patch, wc * patch), float("-inf"))
    padded[:, :h, :w] = score.view(b, h, w)
    cells = padded.view(b, hc, patch, wc, patch).permute(0, 1, 3, 2, 4).reshape(b, hc, wc, patch * patch)
    arg = cells.argmax(dim=-1)
    rows = torch.arange(hc, device=score.device).view(1, hc, 1) * patch + arg // patch
    cols = torch.arange(wc, device=score.device).view(1, 1, wc) * patch + arg % patch
    return (rows * w + cols).view(b, hc * wc)


def num_cells(grid: tuple[int, int], patch: int) -> int:
    """How many base tokens a grid has (one per cell); at most ``N - num_cells`` tokens can be pruned."""
    return -(-grid[0] // patch) * -(-grid[1] // patch)


Half = Literal["first", "second"]


def align_halves(base: Tensor, source: Half) -> Tensor:
    """Give both halves of the batch the base tokens of the ``source`` half (DaTo's CFG alignment)."""
    half = base.shape[0] // 2
    chosen = base[:half] if source == "first" else base[half:]
    return torch.cat([chosen, chosen], dim=0)


def prune_by_similarity(
    xn: Tensor,
    base: Tensor,
    num_prune: int,
    recover_from: Literal["kept", "base"] = "kept",
    rank: Tensor | None = None,
) -> TokenPlan:
    """Prune ``num_prune`` non-base tokens and plan their recovery.

    Args:
        xn: ``(B, N, C)`` unit-length tokens (see :func:`normalize`).
        base: ``(B, cells)`` base token indices; they are never pruned.
        num_prune: K, the number of tokens to remove.
        recover_from: ``"kept"``: copy from the most similar attended token; ``"base"``: from
            the most similar base token.
        rank: ``(B, N)`` pruning priority (highest first). ``None`` ranks by the highest cosine
            similarity to any base token, as SiTo/DaTo do.
    """
    bsz, n, c = xn.shape
    device = xn.device
    is_base = torch.zeros(bsz, n, dtype=torch.bool, device=device).scatter_(1, base, True)
    base_x = xn.gather(1, base.unsqueeze(-1).expand(-1, -1, c))
    best_sim, best_base = (xn @ base_x.transpose(1, 2)).max(dim=-1)
    # Base tokens rank last (-inf), so order = [pruned | unpruned non-base | base].
    order = (best_sim if rank is None else rank).masked_fill(is_base, float("-inf")).argsort(dim=1, descending=True)
    pruned = order[:, :num_prune]
    kept = order[:, num_prune:].sort(dim=1).values
    positions = torch.arange(n - num_prune, device=device).expand(bsz, -1)
    source = torch.empty(bsz, n, dtype=torch.long, device=device).scatter_(1, kept, positions)
    target = base.gather(1, best_base.gather(1, pruned))
    others = order[:, num_prune : n - base.shape[1]]
    if recover_from == "kept" and others.shape[1]:
        # The best kept token is the best base token (known) or the best unpruned non-base token:
        # only the latter needs new similarities, which saves the pruned x base part of the product.
        pruned_x = xn.gather(1, pruned.unsqueeze(-1).expand(-1, -1, c))
        others_x = xn.gather(1, others.unsqueeze(-1).expand(-1, -1, c))
        other_sim, other_arg = (pruned_x @ others_x.transpose(1, 2)).max(dim=-1)
        better = other_sim > best_sim.gather(1, pruned)
        target = torch.where(better, others.gather(1, other_arg), target)
    source.scatter_(1, pruned, source.gather(1, target))
    return TokenPlan(kept=kept, source=source)


def noisy(score: Tensor, noise: float, generator: torch.Generator | None) -> Tensor:
    """``score + noise * N(0, 1)`` in float32, drawn from the method's own generator.

    Scores are sums over thousands of cosines; in fp16 or bf16 their spacing would swallow a
    noise of 0.1 and turn near-ties into the top-left token of every cell.
    """
    score = score.float()
    if noise == 0:
        return score
    return score + noise * torch.randn(score.shape, generator=generator, device=score.device)


def plan_from_score(
    xn: Tensor,
    score: Tensor,
    grid: tuple[int, int],
    num_prune: int,
    *,
    patch: int,
    recover_from: Literal["kept", "base"],
    align_from: Half | None,
    rank: Tensor | None = None,
) -> TokenPlan:
    """Base tokens = per-cell argmax of ``score``, then similarity pruning.

    ``align_from`` shares that half's base tokens with the other half; an odd batch has no CFG
    halves, so it is left as is.
    """
    base = cell_argmax(score, grid, patch)
    if align_from is not None and base.shape[0] % 2 == 0:
        base = align_halves(base, align_from)
    return prune_by_similarity(xn, base, num_prune, recover_from, rank)
