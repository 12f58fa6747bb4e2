"""CAT pruning's token selection on hand-made tensors: positions, K-means, cluster graph, and the choice of tokens."""

import pytest
import torch

from prunesched.runtime.tokens.cat import cat_clusters, cat_select, cluster_adjacency, cluster_scores, kmeans, positional_encoding


def test_positional_encoding_is_row_then_column_over_the_grid():
    code = positional_encoding((2, 3), 4, torch.empty(0))
    assert code.shape == (6, 4)
    assert code[:, :2].tolist() == [[0, 0]] * 3 + [[0.5, 0.5]] * 3  # i / h
    assert torch.allclose(code[:, 2:], torch.tensor([0, 1 / 3, 2 / 3] * 2)[:, None].expand(-1, 2))  # j / w


def test_kmeans_separates_well_separated_groups_per_sample():
    near, far = torch.zeros(7, 2), torch.full((7, 2), 10.0)
    first = torch.cat([near[:5], far[:5]]) + 0.01 * torch.arange(10.0)[:, None]
    second = torch.cat([far[:3], near[:7]])
    labels = kmeans(torch.stack([first, second]), clusters=2, iterations=5)
    assert labels.shape == (2, 10)
    for sample, split in ((0, 5), (1, 3)):
        row = labels[sample].tolist()
        assert len(set(row[:split])) == 1 and len(set(row[split:])) == 1 and row[0] != row[-1]


def test_kmeans_with_more_clusters_than_tokens_gives_every_token_its_own():
    labels = kmeans(torch.randn(1, 3, 4), clusters=20, iterations=3)
    assert sorted(labels[0].tolist()) == [0, 1, 2]


def test_cluster_adjacency_links_clusters_that_touch_on_the_grid():
    labels = torch.tensor([[0, 0, 1, 2]])  # [[0, 0], [1, 2]]: every pair touches; 3 is absent
    adjacency = cluster_adjacency(labels, (2, 2), 4)
    expected = torch.tensor([[0, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.float)
    assert torch.equal(adjacency[0], expected)
    diagonal = cluster_adjacency(torch.tensor([[0, 1, 2, 3]]), (1, 4), 4)[0]  # a row: 0-1, 1-2, 2-3 only
    assert diagonal[0, 1] == 1 and diagonal[0, 2] == 0 and diagonal[2, 3] == 1


def test_cluster_score_is_max_pool_plus_mean_of_neighbours():
    labels = torch.tensor([[0, 0, 1, 2]])
    magnitude = torch.tensor([[1.0, 3.0, 2.0, 5.0]])
    adjacency = torch.tensor([[[0, 1, 0], [1, 0, 1], [0, 1, 0.0]]])  # a chain 0 - 1 - 2
    scores = cluster_scores(magnitude, labels, adjacency)
    assert scores[0].tolist() == [3 + 2, 2 + (3 + 5) / 2, 5 + 2]


def _setup(tokens: int = 16, clusters: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    labels = (torch.arange(tokens) * clusters // tokens)[None]  # contiguous clusters of tokens / clusters
    adjacency = torch.zeros(1, clusters, clusters)  # no neighbours: a cluster's score is its own max
    magnitude = torch.rand(1, tokens, generator=torch.Generator().manual_seed(0))
    return magnitude, labels, adjacency


def test_selection_has_exactly_count_distinct_tokens_in_order():
    magnitude, labels, adjacency = _setup()
    chosen = cat_select(magnitude, torch.rand(1, 16), labels, adjacency, count=7, noise_share=0.25, top_clusters=3)
    assert chosen.shape == (1, 7)
    assert chosen[0].tolist() == sorted(set(chosen[0].tolist()))


def test_noise_share_takes_the_largest_relative_noise_of_the_best_cluster():
    magnitude, labels, adjacency = _setup()
    magnitude[0, 8:12] += 10  # cluster 2 changes most
    chosen = cat_select(magnitude, torch.zeros(1, 16), labels, adjacency, count=3, noise_share=1.0, top_clusters=1)
    assert chosen[0].tolist() == sorted(magnitude[0, 8:12].topk(3).indices.add(8).tolist())


def test_noise_quotas_are_weighted_over_the_top_clusters():
    magnitude, labels, adjacency = _setup(tokens=40, clusters=4)
    for cluster, boost in ((3, 30.0), (1, 20.0), (0, 10.0)):  # ranking: 3, 1, 0, then 2
        magnitude[0, cluster * 10 : cluster * 10 + 10] += boost
    chosen = cat_select(magnitude, torch.zeros(1, 40), labels, adjacency, count=12, noise_share=1.0, top_clusters=3)
    per_cluster = torch.bincount(labels[0, chosen[0]], minlength=4).tolist()
    assert per_cluster == [2, 4, 0, 6]  # 12 split 3 : 2 : 1 over clusters 3, 1, 0


def test_the_rest_are_the_stalest_tokens_ties_broken_by_larger_noise():
    magnitude, labels, adjacency = _setup()
    frequency = torch.ones(1, 16)
    frequency[0, [2, 9]] = 0.0  # never recently selected
    frequency[0, [4, 5, 6]] = 0.5
    chosen = cat_select(magnitude, frequency, labels, adjacency, count=4, noise_share=0.0, top_clusters=3)
    tied = [4, 5, 6]
    best_tied = sorted(tied, key=lambda i: -magnitude[0, i].item())[:2]
    assert chosen[0].tolist() == sorted([2, 9, *best_tied])


def test_a_cluster_smaller_than_its_quota_gives_what_it_has_and_stale_tokens_fill_the_rest():
    magnitude, labels, adjacency = _setup(tokens=16, clusters=8)  # clusters of 2 tokens
    magnitude[0, 0:2] += 10
    frequency = torch.ones(1, 16)
    frequency[0, 15] = 0.0
    chosen = cat_select(magnitude, frequency, labels, adjacency, count=4, noise_share=1.0, top_clusters=1)
    assert chosen.shape == (1, 4) and {0, 1, 15} <= set(chosen[0].tolist())


def test_selection_and_clustering_have_static_shapes_so_they_run_on_the_meta_device():
    relative = torch.empty(2, 48, 16, device="meta")
    labels, adjacency = cat_clusters(relative, (6, 8), clusters=5, iterations=3, position_weight=1.0)
    assert labels.shape == (2, 48) and adjacency.shape == (2, 5, 5)
    chosen = cat_select(torch.empty(2, 48, device="meta"), torch.empty(2, 48, device="meta"), labels, adjacency, 15, 0.25, 3)
    assert chosen.shape == (2, 15) and chosen.device.type == "meta"


def test_clusters_follow_where_the_noise_changed():
    torch.manual_seed(0)
    relative = 0.01 * torch.randn(1, 64, 8)
    relative[0, :, :] += torch.where(torch.arange(64) % 8 < 4, 5.0, -5.0)[:, None]  # left half vs right half of an 8x8 grid
    labels, _ = cat_clusters(relative, (8, 8), clusters=2, iterations=10, position_weight=0.1)
    grid = labels[0].view(8, 8)
    assert (grid[:, :4] == grid[0, 0]).all() and (grid[:, 4:] == grid[0, 7]).all() and grid[0, 0] != grid[0, 7]


@pytest.mark.parametrize("bad", [{"clusters": 0}, {"decay": 1.5}, {"noise_share": -0.1}, {"top_clusters": 1.5}])
def test_cat_config_rejects_bad_parameters(bad):
    from prunesched import CatConfig, ScheduleError

    with pytest.raises(ScheduleError, match="method 'cat'"):
        CatConfig(**bad)
