"""AT-EDM's token ranking (G-WPR) and recovery (similarity-based copy) on random tensors: no diffusers involved."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from prunesched.runtime.tokens.atedm import atedm_plan, attention_map, combine_heads, gwpr, scored_self_attention


def random_maps(*shape: int, seed: int = 0) -> torch.Tensor:
    """Row-stochastic maps, as softmax makes them."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).mul(2).softmax(dim=-1)


def power_iteration(attn: torch.Tensor, steps: int) -> torch.Tensor:
    """The textbook loop, one map at a time: s <- A^T s, normalised to sum 1, from the uniform vector."""
    s = torch.full((attn.shape[0],), 1 / attn.shape[0], dtype=torch.float64)
    for _ in range(steps):
        s = attn.double().T @ s
        s = s / s.sum()
    return s


def stationary(attn: torch.Tensor) -> torch.Tensor:
    """The fixed point of self-attention G-WPR: the left eigenvector of A for eigenvalue 1, summing to 1."""
    values, vectors = torch.linalg.eig(attn.double().T)
    v = vectors[:, (values - 1).abs().argmin()].real
    return v / v.sum()


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_fixed_iterations_equal_a_direct_power_iteration(steps):
    maps = random_maps(2, 3, 40, 40)
    scores = gwpr(maps, "self", iterations=steps)
    for b in range(2):
        for h in range(3):
            torch.testing.assert_close(scores[b, h].double(), power_iteration(maps[b, h], steps), rtol=1e-5, atol=1e-7)


def test_converged_scores_are_the_stationary_distribution():
    maps = random_maps(2, 2, 50, 50, seed=1)
    scores = gwpr(maps, "self", epsilon=1e-9)
    for b in range(2):
        for h in range(2):
            torch.testing.assert_close(scores[b, h].double(), stationary(maps[b, h]), rtol=1e-4, atol=1e-7)


def test_cross_attention_mapping_is_eq_1_on_a_hand_computed_3x2_map():
    a = [[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]
    s_q = [1 / 3] * 3
    s_k = [sum(a[i][j] * s_q[i] for i in range(3)) for j in range(2)]  # A^T s_Q
    mapped = [sum(a[i][j] * s_k[j] for j in range(2)) / -sum(p * math.log(p) for p in a[i]) for i in range(3)]  # Eq. 1
    expected = [m / sum(mapped) for m in mapped]
    assert expected == pytest.approx([0.21855, 0.49084, 0.29062], abs=1e-5)  # the same numbers worked by hand
    got = gwpr(torch.tensor([a]), "cross", iterations=1)[0]
    assert got.tolist() == pytest.approx(expected, rel=1e-6)
    # the focused row (0.9 / 0.1) ranks first: it spends its attention decisively
    assert got.argmax().item() == 1


def test_scores_do_not_depend_on_the_order_of_heads():
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 4, 64, 8, generator=gen) for _ in range(3))
    perm = torch.tensor([2, 0, 3, 1])
    one = scored_self_attention(q, k, v, 8**-0.5, iterations=5)
    other = scored_self_attention(q[:, perm], k[:, perm], v[:, perm], 8**-0.5, iterations=5)
    torch.testing.assert_close(one.score, other.score)
    torch.testing.assert_close(one.received, other.received)
    assert torch.equal(combine_heads(torch.tensor([[[1.0], [7.0]]])), torch.tensor([[5.0]]))  # sqrt((1 + 49) / 2)


def test_the_explicit_attention_equals_sdpa_whatever_the_chunk():
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 3, 100, 16, generator=gen) for _ in range(3))
    expected = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 100, 48)
    for chunk in (7, 100, 1024):
        torch.testing.assert_close(
            scored_self_attention(q, k, v, 16**-0.5, iterations=2, chunk=chunk).output, expected, rtol=1e-5, atol=1e-5
        )
    torch.testing.assert_close(attention_map(q[:, 0], k[:, 0], 0.25, chunk=9), attention_map(q[:, 0], k[:, 0], 0.25, chunk=100))


def test_similarity_copy_fills_every_pruned_position_from_the_kept_token_it_receives_most_attention_from():
    received = random_maps(2, 30, 30, seed=4) * 3  # a sum over three heads
    score = torch.rand(2, 30, generator=torch.Generator().manual_seed(5))
    plan = atedm_plan(score, received, num_prune=12)
    x = torch.randn(2, 30, 5)
    y = plan.recover(plan.gather(x))
    for b in range(2):
        kept = plan.kept[b].tolist()
        assert set(kept) == set(score[b].argsort(descending=True)[:18].tolist())  # the 18 highest scores stay
        for j in range(30):
            if j in kept:
                assert torch.equal(y[b, j], x[b, j])
            else:
                best = max(kept, key=lambda i: received[b, i, j].item())
                assert torch.equal(y[b, j], x[b, best]), (b, j)


def test_nothing_pruned_is_the_identity():
    plan = atedm_plan(torch.rand(1, 10), random_maps(1, 10, 10), num_prune=0)
    x = torch.randn(1, 10, 3)
    assert torch.equal(plan.recover(plan.gather(x)), x)
