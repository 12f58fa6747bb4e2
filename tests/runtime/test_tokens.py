"""Token methods on random tensors, checked against brute-force references. No diffusers involved."""

import pytest
import torch

from prunesched.runtime.tokens import dato_plan, diff_score, num_cells, random_plan, sito_plan
from prunesched.runtime.tokens.selection import (
    align_halves,
    cell_argmax,
    normalize,
    prune_by_similarity,
    similarity_score,
)

GRIDS = [(8, 8), (8, 12), (5, 7)]


def _tokens(b, grid, c=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, grid[0] * grid[1], c, generator=g)


def _cells(grid, patch):
    """Brute force: the flat token indices of each cell, row-major over cells."""
    h, w = grid
    return [
        [r * w + c for r in range(i, min(i + patch, h)) for c in range(j, min(j + patch, w))]
        for i in range(0, h, patch)
        for j in range(0, w, patch)
    ]


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("patch", [2, 3])
def test_cell_argmax_matches_brute_force(grid, patch):
    score = torch.randn(3, grid[0] * grid[1])
    base = cell_argmax(score, grid, patch)
    expected = [[max(cell, key=lambda i: score[b, i]) for cell in _cells(grid, patch)] for b in range(3)]
    assert base.tolist() == expected
    assert base.shape[1] == num_cells(grid, patch)


def test_similarity_score_equals_cosine_row_sum():
    x = _tokens(2, (6, 6))
    xn = normalize(x)
    explicit = torch.nn.functional.cosine_similarity(x[:, :, None], x[:, None], dim=-1).sum(-1)
    torch.testing.assert_close(similarity_score(xn), explicit, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("b", [1, 3, 4])
def test_plans_keep_exact_counts_and_recover_every_token(grid, ratio, b):
    n = grid[0] * grid[1]
    x = _tokens(b, grid)
    k = min(int(ratio * n), n - num_cells(grid, 2))
    for plan in (
        sito_plan(x, grid, k),
        dato_plan(x, grid, k, torch.rand(b, n)),
        dato_plan(x, grid, k, None),
        random_plan(x, grid, k, generator=torch.Generator().manual_seed(1)),
    ):
        assert plan.kept.shape == (b, n - k)
        assert (plan.kept.diff(dim=1) > 0).all(), "kept indices are unique and ascending"
        recovered = plan.recover(plan.gather(x))
        assert recovered.shape == x.shape
        kept_mask = torch.zeros(b, n, dtype=torch.bool).scatter_(1, plan.kept, True)
        assert torch.equal(recovered[kept_mask], x[kept_mask]), "attended tokens keep their own output"


def test_pruning_follows_similarity_to_base_tokens():
    """Eq. 6 of SiTo / Eq. 9 of DaTo: prune the non-base tokens most similar to any base token."""
    grid, k = (6, 6), 12
    x = _tokens(2, grid)
    xn = normalize(x)
    base = cell_argmax(torch.randn(2, 36), grid, 2)
    plan = prune_by_similarity(xn, base, k, "base")
    for b in range(2):
        bases = set(base[b].tolist())
        best = {i: max(float(xn[b, i] @ xn[b, j]) for j in bases) for i in range(36) if i not in bases}
        pruned = set(range(36)) - set(plan.kept[b].tolist())
        assert pruned == set(sorted(best, key=best.get, reverse=True)[:k])
        assert bases <= set(plan.kept[b].tolist())


@pytest.mark.parametrize("recover_from", ["kept", "base"])
def test_recovery_copies_the_most_similar_allowed_token(recover_from):
    grid, k = (6, 6), 15
    x = _tokens(2, grid)
    xn = normalize(x)
    base = cell_argmax(torch.randn(2, 36), grid, 2)
    plan = prune_by_similarity(xn, base, k, recover_from)
    for b in range(2):
        kept = plan.kept[b].tolist()
        allowed = base[b].tolist() if recover_from == "base" else kept
        for i in set(range(36)) - set(kept):
            expected = max(allowed, key=lambda j: float(xn[b, i] @ xn[b, j]))
            assert kept[plan.source[b, i]] == expected


def test_sito_base_tokens_are_the_most_typical_per_cell():
    grid = (8, 8)
    x = _tokens(2, grid)
    plan = sito_plan(x, grid, 40, noise=0.0)
    base = cell_argmax(similarity_score(normalize(x)), grid, 2)
    for b in range(2):
        assert set(base[b].tolist()) <= set(plan.kept[b].tolist())


def test_noise_comes_from_the_given_generator_only():
    grid = (8, 8)
    x = _tokens(2, grid)
    state = torch.random.get_rng_state()
    a = sito_plan(x, grid, 40, noise=100.0, generator=torch.Generator().manual_seed(3))
    b = sito_plan(x, grid, 40, noise=100.0, generator=torch.Generator().manual_seed(3))
    c = sito_plan(x, grid, 40, noise=100.0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(torch.random.get_rng_state(), state), "the global RNG is untouched"
    assert torch.equal(a.kept, b.kept) and not torch.equal(a.kept, c.kept)


def test_dato_base_tokens_are_where_the_feature_changed_most():
    grid = (8, 8)
    x = _tokens(2, grid)
    diff = torch.rand(2, 64)
    plan = dato_plan(x, grid, 40, diff, noise=0.0)
    base = cell_argmax(diff, grid, 2)
    for b in range(2):
        assert set(base[b].tolist()) <= set(plan.kept[b].tolist())


def test_dato_random_sign_sometimes_selects_the_least_changed_token():
    grid = (8, 8)
    x = _tokens(2, grid)
    diff = torch.rand(2, 64)
    top, bottom = cell_argmax(diff, grid, 2), cell_argmax(-diff, grid, 2)
    generator = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(20):
        kept = set(dato_plan(x, grid, 40, diff, noise=0.0, random_sign=True, generator=generator).kept[0].tolist())
        seen.add("top" if set(top[0].tolist()) <= kept else "bottom" if set(bottom[0].tolist()) <= kept else "?")
    assert seen == {"top", "bottom"}


@pytest.mark.parametrize(("source", "other"), [("first", slice(2, 4)), ("second", slice(0, 2))])
def test_cfg_alignment_shares_one_halfs_base_tokens(source, other):
    grid = (8, 8)
    x = _tokens(4, grid)
    plan = sito_plan(x, grid, 40, noise=0.0, align_from=source)
    half = slice(0, 2) if source == "first" else slice(2, 4)
    source_base = cell_argmax(similarity_score(normalize(x[half])), grid, 2)
    for b, kept in enumerate(plan.kept[other]):
        assert set(source_base[b].tolist()) <= set(kept.tolist())
    base = torch.arange(8).view(4, 2)
    assert torch.equal(align_halves(base, "first"), torch.cat([base[:2], base[:2]]))
    assert torch.equal(align_halves(base, "second"), torch.cat([base[2:], base[2:]]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_noise_survives_half_precision(dtype):
    """SimScore is a sum of thousands of cosines: its noise must not round away in fp16/bf16."""
    grid = (64, 64)
    x = _tokens(2, grid, c=32).to(dtype)
    kept = {tuple(sito_plan(x, grid, 2048, generator=torch.Generator().manual_seed(s)).kept[0, :64].tolist()) for s in range(4)}
    assert len(kept) > 1, "different noise draws pick different base tokens"


def test_diff_score_is_the_channel_mean_absolute_change_pooled_to_the_grid():
    previous, current = torch.randn(2, 5, 8, 12), torch.randn(2, 5, 8, 12)
    expected = (current - previous).abs().mean(1).flatten(1)
    torch.testing.assert_close(diff_score(previous, current, (8, 12)), expected)
    pooled = diff_score(previous, current, (4, 6))
    torch.testing.assert_close(pooled, torch.nn.functional.avg_pool2d((current - previous).abs().mean(1, keepdim=True), 2).flatten(1))


def test_random_plans_differ_by_seed_and_are_uniform():
    grid = (8, 8)
    x = _tokens(1, grid)
    counts = torch.zeros(64)
    for seed in range(200):
        plan = random_plan(x, grid, 32, generator=torch.Generator().manual_seed(seed))
        counts[plan.kept[0]] += 1
    assert counts.min() > 60 and counts.max() < 140, "every position is kept about half the time"


def test_plans_at_sd_resolution_keep_the_upstream_count():
    """SD 1.5 at 512x512: 4096 tokens, ratio 0.5 -> 2048 attended (SiTo README's example)."""
    grid = (64, 64)
    x = _tokens(2, grid, c=64)
    assert sito_plan(x, grid, int(0.5 * 4096)).num_kept == 2048
    assert dato_plan(x, grid, int(0.3 * 4096), torch.rand(2, 4096)).num_kept == 4096 - 1228


@pytest.mark.parametrize("method", ["sito", "dato", "dato_random_sign", "random"])
def test_plans_never_read_tensor_values_on_the_host(method):
    """On the meta device any host sync (``.item()``, ``nonzero``, Python ``if tensor``) raises: plans stay on the device."""
    grid = (64, 96)
    x = torch.empty(2, 64 * 96, 320, device="meta")
    k = int(0.5 * x.shape[1])
    plan = {
        "sito": lambda: sito_plan(x, grid, k, align_from="second"),
        "dato": lambda: dato_plan(x, grid, k, torch.empty(2, 64 * 96, device="meta")),
        "dato_random_sign": lambda: dato_plan(x, grid, k, torch.empty(2, 64 * 96, device="meta"), random_sign=True),
        "random": lambda: random_plan(x, grid, k),
    }[method]()
    assert plan.kept.shape == (2, 64 * 96 - k) and plan.source.shape == (2, 64 * 96)
    assert plan.recover(plan.gather(x)).shape == x.shape
