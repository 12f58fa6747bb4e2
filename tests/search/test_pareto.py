"""Fronts, hypervolume and the weighted pick, against brute force and pymoo's hypervolume."""

from __future__ import annotations

import numpy as np
from pymoo.indicators.hv import HV

from prunesched.search.pareto import front_indices, hypervolume, pick_weighted


def _dominated(p, q):
    return q[0] <= p[0] and q[1] <= p[1] and (q[0] < p[0] or q[1] < p[1])


def test_front_and_hypervolume_match_brute_force_and_pymoo():
    rng = np.random.default_rng(0)
    for _ in range(30):
        points = rng.integers(0, 8, size=(rng.integers(1, 25), 2)).astype(float)
        front = front_indices(points)
        expected = {tuple(p) for p in points if not any(_dominated(p, q) for q in points)}
        assert {tuple(points[i]) for i in front} == expected
        assert len(front) == len(expected)  # duplicates appear once
        reference = np.array([7.5, 7.5])
        assert np.isclose(
            hypervolume(points, reference), HV(ref_point=reference)(points) if (points < reference).all(axis=1).any() else 0.0
        )


def test_points_beyond_the_reference_add_nothing():
    assert hypervolume([[1, 1], [5, 0.5]], [4, 4]) == 9.0


def test_the_weighted_pick_trades_quality_against_cost():
    points = [[1.0, 10.0], [3.0, 4.0], [9.0, 1.0]]
    assert pick_weighted(points, 0.0) == 0
    assert pick_weighted(points, 1.0) == 1
    assert pick_weighted(points, 10.0) == 2
