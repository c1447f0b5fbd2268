"""Pareto front, ranks and hypervolume against hand values and brute force."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dse.pareto import hypervolume, non_dominated, ranks, reference_point

points = st.integers(1, 4).flatmap(lambda d: st.lists(
    st.lists(st.integers(0, 6), min_size=d, max_size=d), min_size=1, max_size=25))


def _dominates(a, b):
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


@given(points)
def test_front_equals_brute_force(values):
    v = np.array(values, float)
    expected = [not any(_dominates(o, p) for o in values) for p in values]
    assert non_dominated(v).tolist() == expected
    r = ranks(v)
    assert ((r == 0) == non_dominated(v)).all()
    for i, j in np.ndindex(len(values), len(values)):  # a dominated point ranks strictly after its dominator
        if _dominates(values[i], values[j]):
            assert r[i] < r[j]


def test_nan_rows_are_never_on_the_front():
    v = np.array([[1.0, 1.0], [np.nan, 0.0], [2.0, 0.5]])
    assert non_dominated(v).tolist() == [True, False, True]
    assert ranks(v).tolist() == [0, -1, 0]


def test_hypervolume_hand_values():
    assert hypervolume(np.array([[1.0, 1.0]]), [3, 3]) == 4.0
    # staircase: (1,3), (2,2), (3,1) under reference (4,4): 3 + 2 + 1 = 6
    assert hypervolume(np.array([[1, 3], [2, 2], [3, 1]], float), [4, 4]) == 6.0
    assert hypervolume(np.array([[1, 1, 1]], float), [2, 3, 4]) == 6.0
    # two boxes in 3-D overlapping in [0,1]^3: 2 + 2 - 1
    assert hypervolume(np.array([[0, 0, 1], [0, 1, 0]], float), [1, 2, 2]) == 3.0
    assert hypervolume(np.array([[5.0, 5.0]]), [3, 3]) == 0.0  # beyond the reference: nothing


@settings(max_examples=30, deadline=None)
@given(points)
def test_hypervolume_equals_exact_grid_count(values):
    """On integer points the dominated volume is a count of unit cells."""
    v = np.array(values, float)
    ref = np.full(v.shape[1], 7.0)
    cells = np.stack(np.meshgrid(*[np.arange(7)] * v.shape[1], indexing="ij"), -1).reshape(-1, v.shape[1])
    covered = (cells[:, None, :] >= v[None, :, :]).all(axis=2).any(axis=1)
    assert hypervolume(v, ref) == covered.sum()


def test_reference_point_is_just_beyond_the_worst():
    ref = reference_point(np.array([[1.0, 10.0], [3.0, 20.0]]))
    assert np.allclose(ref, [3.2, 21.0])


def test_ranks_equal_peeling_fronts_one_by_one_with_ties_and_nan():
    """The fast sort (domination matrix once) gives what removing fronts one at a time gives."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        n, d = int(rng.integers(0, 50)), int(rng.integers(1, 4))
        v = rng.integers(0, 4, (n, d)).astype(float)     # many ties
        if n and rng.random() < 0.3:
            v[rng.integers(0, n)] = np.nan
        want = np.full(n, -1)
        left = np.flatnonzero(~np.isnan(v).any(axis=1))
        rank = 0
        while len(left):
            front = non_dominated(v[left])
            want[left[front]] = rank
            left, rank = left[~front], rank + 1
        assert ranks(v).tolist() == want.tolist()
