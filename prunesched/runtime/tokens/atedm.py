"""AT-EDM (Wang et al., CVPR 2024): rank tokens by Generalized Weighted PageRank on attention maps, and
recover pruned tokens by similarity-based copy from the self-attention map.

The attention map is materialised one head at a time, its softmax taken in query chunks, so
memory stays at two ``N x N`` maps per sample (the head's and the sum over heads that recovery
reads) whatever the head count; at 4,096 tokens that is 128 MiB per sample in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from prunesched.runtime.tokens.selection import TokenPlan

Source = Literal["self", "cross"]


def gwpr(attn: Tensor, source: Source = "self", iterations: int | None = None, epsilon: float = 1e-6, max_iterations: int = 200) -> Tensor:
    """G-WPR importance of the query (image) tokens of row-stochastic maps ``attn`` ``(..., M, N)``; returns ``(..., M)``.

    Algorithm 1 of the paper: start from the uniform score ``1/M``; each iteration maps query
    importance to key importance (``s_K = A^T s_Q``), back to query importance with ``f`` (the
    identity for self-attention, where queries and keys are the same tokens; for cross-attention
    Eq. 1, ``s_Q(q_i) = sum_j A_ij s_K(k_j) / (-sum_j A_ij ln A_ij)``: an image token that spends
    focused attention on important text tokens is important), and normalises to unit L1 norm.
    ``iterations=None`` iterates until the L1 change is below ``epsilon`` for every map (at most
    ``max_iterations``); an integer runs exactly that many iterations, with no host
    synchronisation, as batched GPU code wants.
    """
    if source not in ("self", "cross"):
        raise ValueError(f"source must be 'self' or 'cross', got {source!r}")
    attn = attn.float()
    if source == "self" and attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"a self-attention map is square, got {tuple(attn.shape[-2:])}")
    focus = None
    if source == "cross":
        focus = (-(attn * attn.clamp_min(1e-12).log()).sum(dim=-1)).clamp_min(1e-12)  # entropy of each query's row
    score = attn.new_full(attn.shape[:-1], 1.0 / attn.shape[-2])
    for _ in range(max_iterations if iterations is None else iterations):
        keys = (score.unsqueeze(-2) @ attn).squeeze(-2)  # s_K = A^T s_Q as a row vector times A: a contiguous read of A
        new = keys if focus is None else (attn @ keys.unsqueeze(-1)).squeeze(-1) / focus
        new = new / new.sum(dim=-1, keepdim=True).clamp_min(1e-30)
        converged = iterations is None and bool(((new - score).abs().sum(dim=-1) <= epsilon).all())
        score = new
        if converged:
            break
    return score


def combine_heads(scores: Tensor) -> Tensor:
    """``(B, H, M) -> (B, M)``: the root mean square over heads, which rewards tokens very important to a few heads."""
    return scores.square().mean(dim=1).sqrt()


@dataclass(frozen=True)
class ScoredAttention:
    """One explicit self-attention pass: its output, G-WPR token scores, and the head-summed map for recovery.

    Attributes:
        output: ``(B, N, H * d)`` attention output, heads concatenated (before the output projection).
        score: ``(B, N)`` G-WPR importance, root mean square over heads.
        received: ``(B, N, N)`` the attention maps summed over heads; ``received[b, i, j]`` is how
            much query i attends to key j.
    """

    output: Tensor
    score: Tensor
    received: Tensor


def scored_self_attention(
    q: Tensor, k: Tensor, v: Tensor, scale: float, *, iterations: int | None = None, chunk: int = 1024, epsilon: float = 1e-6
) -> ScoredAttention:
    """Self-attention of ``(B, H, N, d)`` queries, keys and values with explicit maps, and G-WPR on each head's map."""
    b, h, n, _ = q.shape
    output = torch.empty(b, h, n, v.shape[-1], dtype=v.dtype, device=v.device)
    received = torch.zeros(b, n, n, dtype=torch.float32, device=q.device)
    scores = torch.empty(b, h, n, dtype=torch.float32, device=q.device)
    for head in range(h):
        attn = attention_map(q[:, head], k[:, head], scale, chunk)
        output[:, head] = attn.to(v.dtype) @ v[:, head]
        scores[:, head] = gwpr(attn, "self", iterations, epsilon)
        received += attn
    return ScoredAttention(output.transpose(1, 2).reshape(b, n, -1), combine_heads(scores), received)


def attention_map(q: Tensor, k: Tensor, scale: float, chunk: int = 1024) -> Tensor:
    """``softmax(q k^T * scale)`` of ``(B, M, d)`` and ``(B, N, d)`` in float32, built ``chunk`` query rows at a time."""
    out = torch.empty(q.shape[0], q.shape[1], k.shape[1], dtype=torch.float32, device=q.device)
    keys = k.float().transpose(1, 2)
    for start in range(0, q.shape[1], chunk):
        rows = slice(start, start + chunk)
        out[:, rows] = ((q[:, rows].float() * scale) @ keys).softmax(dim=-1)  # scaling q is cheaper than scaling the map
    return out


def atedm_plan(score: Tensor, received: Tensor, num_prune: int) -> TokenPlan:
    """Keep the ``N - num_prune`` highest-scoring tokens; each pruned token copies the kept token it receives most attention from.

    For a pruned key ``b`` the most similar token is the retained query ``i`` with the largest
    ``A[i, b]`` (the paper's similarity-based copy: the attention ``b`` receives from ``i`` grows
    with ``b``'s importance, which is fixed for ``b``, and with the two tokens' similarity).
    """
    bsz, n = score.shape
    order = score.argsort(dim=1, descending=True)
    kept = order[:, : n - num_prune].sort(dim=1).values
    pruned = order[:, n - num_prune :]
    positions = torch.arange(n - num_prune, device=score.device).expand(bsz, -1)
    source = torch.empty(bsz, n, dtype=torch.long, device=score.device).scatter_(1, kept, positions)
    if num_prune:
        to_pruned = received.gather(2, pruned.unsqueeze(1).expand(-1, n, -1))  # (B, N, pruned): what each query gives them
        from_kept = to_pruned.gather(1, kept.unsqueeze(-1).expand(-1, -1, num_prune))  # (B, kept, pruned)
        source.scatter_(1, pruned, from_kept.argmax(dim=1))  # the argmax is a position in ``kept``
    return TokenPlan(kept=kept, source=source)
