"""CAT pruning's token selection (CAT Pruning §3, Algorithm 2): which image tokens a DiT step recomputes.

Inputs are per *selection sample* (one per image: the conditional half under classifier-free
guidance): the relative noise ``n_t - n_t0`` as ``(S, N, d)`` tokens of the model output, and
the EWMA selection frequency ``(S, N)``. Every function has static shapes and no host
synchronisation (no ``nonzero``, no ``.item()``): a step's selection queues on a GPU without
waiting, and it runs on the meta device, where the benchmark counts its MACs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def positional_encoding(grid: tuple[int, int], dim: int, like: Tensor) -> Tensor:
    """Eq. 3 on an ``h x w`` token grid (row-major): the first ``dim // 2`` features are ``i / h``, the rest ``j / w``."""
    height, width = grid
    rows = torch.arange(height, device=like.device, dtype=like.dtype).repeat_interleave(width) / height
    cols = torch.arange(width, device=like.device, dtype=like.dtype).repeat(height) / width
    half = dim // 2
    return torch.cat([rows[:, None].expand(-1, half), cols[:, None].expand(-1, dim - half)], dim=1)


def kmeans(features: Tensor, clusters: int, iterations: int) -> Tensor:
    """Cluster labels ``(S, N)`` of ``features`` ``(S, N, d)`` by Lloyd's algorithm with the L2 metric.

    Centroids start at evenly spaced tokens (deterministic, and spread over the image because
    the features carry position); a fixed number of iterations keeps the shapes static. An
    emptied cluster keeps its previous centroid.
    """
    samples, tokens, dim = features.shape
    count = min(clusters, tokens)
    start = torch.linspace(0, tokens - 1, count, device=features.device).round().long()
    centroids = features[:, start]
    for _ in range(iterations):
        labels = _nearest(features, centroids)
        sums = torch.zeros_like(centroids).scatter_add_(1, labels[..., None].expand(-1, -1, dim), features)
        sizes = torch.zeros(samples, count, device=features.device, dtype=features.dtype).scatter_add_(
            1, labels, torch.ones_like(features[..., 0])
        )
        centroids = torch.where(sizes[..., None] > 0, sums / sizes.clamp(min=1)[..., None], centroids)
    return _nearest(features, centroids)


def _nearest(features: Tensor, centroids: Tensor) -> Tensor:
    """Index of the nearest centroid; ``|x|^2`` is the same for every centroid of a token, so it is left out."""
    return ((centroids * centroids).sum(-1)[:, None, :] - 2 * features @ centroids.transpose(1, 2)).argmin(-1)


def cluster_adjacency(labels: Tensor, grid: tuple[int, int], clusters: int) -> Tensor:
    """``(S, K, K)`` 0/1: whether two clusters touch on the token grid (4-neighbourhood); no self-loops."""
    samples = labels.shape[0]
    cells = labels.view(samples, *grid)
    first = torch.cat([cells[:, :, :-1].flatten(1), cells[:, :-1, :].flatten(1)], dim=1)
    second = torch.cat([cells[:, :, 1:].flatten(1), cells[:, 1:, :].flatten(1)], dim=1)
    edges = torch.cat([first * clusters + second, second * clusters + first], dim=1)
    adjacency = torch.zeros(samples, clusters * clusters, device=labels.device).scatter_(1, edges, 1.0).view(samples, clusters, clusters)
    return adjacency * (1 - torch.eye(clusters, device=labels.device))


def cat_clusters(relative: Tensor, grid: tuple[int, int], clusters: int, iterations: int, position_weight: float) -> tuple[Tensor, Tensor]:
    """K-means labels ``(S, N)`` on the relative noise (scaled to unit RMS) plus the weighted positional
    encoding, and the clusters' adjacency ``(S, K, K)``: computed once per generation (Algorithm 2, i = t0 + 1)."""
    scale = relative.pow(2).mean(dim=(1, 2), keepdim=True).sqrt().clamp(min=torch.finfo(relative.dtype).tiny)
    features = relative / scale + position_weight * positional_encoding(grid, relative.shape[-1], relative)
    labels = kmeans(features, clusters, iterations)
    return labels, cluster_adjacency(labels, grid, min(clusters, relative.shape[1]))


def cluster_scores(magnitude: Tensor, labels: Tensor, adjacency: Tensor) -> Tensor:
    """Graph pooling (§3.4): a cluster's score is its largest relative-noise magnitude (max pool) plus the mean
    of its neighbouring clusters' (one round of non-trainable message passing), so that a cluster beside a
    changing region ranks high too. ``(S, K)``."""
    clusters = adjacency.shape[-1]
    pooled = torch.zeros(labels.shape[0], clusters, device=magnitude.device, dtype=magnitude.dtype)
    pooled = pooled.scatter_reduce(1, labels, magnitude, "amax", include_self=False)
    neighbours = (adjacency.to(pooled.dtype) @ pooled[..., None]).squeeze(-1) / adjacency.sum(-1).clamp(min=1).to(pooled.dtype)
    return pooled + neighbours


def cat_select(
    magnitude: Tensor, frequency: Tensor, labels: Tensor, adjacency: Tensor, count: int, noise_share: float, top_clusters: int
) -> Tensor:
    """The ``count`` tokens a step recomputes, ``(S, count)`` in ascending order (Algorithm 2).

    First, ``round(noise_share * count)`` tokens by relative-noise magnitude inside the
    ``top_clusters`` best-scoring clusters, their quotas weighted n, n-1, ..., 1 (a cluster
    smaller than its quota gives what it has). Then the stalest tokens: lowest selection
    frequency, ties broken by larger magnitude, until ``count`` tokens are chosen.
    """
    samples = magnitude.shape[0]
    clusters = adjacency.shape[-1]
    top = min(top_clusters, clusters)
    noise_count = round(noise_share * count)
    quotas = noise_count * torch.arange(top, 0, -1, device=labels.device) // (top * (top + 1) // 2)  # built on the device: no copy
    quotas[0] += noise_count - quotas.sum()
    ranked = cluster_scores(magnitude, labels, adjacency).argsort(dim=-1, descending=True, stable=True)[:, :top]
    quota = torch.zeros(samples, clusters, dtype=torch.long, device=labels.device)
    quota = quota.scatter(1, ranked, quotas.expand(samples, -1))

    by_magnitude = magnitude.argsort(dim=-1, descending=True, stable=True)
    members = F.one_hot(labels.gather(1, by_magnitude), clusters)
    rank_in_cluster = torch.empty_like(labels).scatter_(1, by_magnitude, (members.cumsum(1) * members).sum(-1) - 1)
    noise_pick = rank_in_cluster < quota.gather(1, labels)

    order = by_magnitude.gather(1, frequency.gather(1, by_magnitude).argsort(dim=-1, stable=True))
    order = order.gather(1, (~noise_pick).gather(1, order).to(torch.uint8).argsort(dim=-1, stable=True))
    return order[:, :count].sort(-1).values
