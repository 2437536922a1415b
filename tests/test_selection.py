"""clu/selection.py: the forget-set rules of random_sample requests, checked against brute force."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from clu.selection import (
    NEIGHBOURS,
    PROJECTED_DIMS,
    atypical,
    atypicality,
    concentrated,
    embed,
    fewest_classes,
    nearest_neighbours,
    uniform,
)


def _brute_atypicality(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Disagreeing labels among the k nearest others, by full sorting (no ties in continuous data)."""
    d = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=2)
    np.fill_diagonal(d, np.inf)
    near = np.argsort(d, axis=1)[:, :k]
    return (y[near] != y[:, None]).sum(axis=1)


def _blobs(seed: int = 0, n: int = 90, planted: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three well-separated Gaussian blobs in 5-d, one label each, and ``planted`` samples given a wrong label."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n // 3)
    x = rng.normal(size=(n, 5)) + 12.0 * np.eye(5)[y]
    wrong = rng.choice(n, size=planted, replace=False)
    y[wrong] = (y[wrong] + 1) % 3
    return x, y, np.sort(wrong)


def test_atypicality_counts_the_disagreeing_nearest_neighbours() -> None:
    for seed in range(3):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(80, 6))
        y = rng.integers(0, 4, size=80)
        np.testing.assert_array_equal(atypicality(x, y), _brute_atypicality(x, y, NEIGHBOURS))
        np.testing.assert_array_equal(atypicality(x, y, k=3), _brute_atypicality(x, y, 3))


def test_atypical_picks_the_mislabelled_samples() -> None:
    x, y, wrong = _blobs()
    pool = np.arange(100, 100 + len(y))  # ids differ from row numbers
    picked = atypical(pool, x, y, len(wrong), np.random.default_rng(0))
    np.testing.assert_array_equal(picked, pool[wrong])
    score = atypicality(x, y)
    assert score[wrong].min() >= NEIGHBOURS - 1 > score[np.setdiff1d(np.arange(len(y)), wrong)].max()


@pytest.mark.parametrize("n", [1, 7, 25, 60])
def test_atypical_takes_the_highest_scores_and_breaks_ties_by_seed(n) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(120, 4))
    y = rng.integers(0, 3, size=120)
    pool = np.arange(120) * 3
    score = dict(zip(pool.tolist(), atypicality(x, y).tolist()))
    picks = [atypical(pool, x, y, n, np.random.default_rng(seed)) for seed in range(6)]
    for p in picks:
        assert len(p) == n and list(p) == sorted(set(p.tolist()))
        rest = sorted(set(pool.tolist()) - set(p.tolist()))
        assert min(score[i] for i in p) >= max(score[i] for i in rest)  # nothing more atypical left behind
        # every sample strictly above the boundary score is always taken
        boundary = min(score[i] for i in p)
        assert {i for i, s in score.items() if s > boundary} <= set(p.tolist())
    np.testing.assert_array_equal(picks[0], atypical(pool, x, y, n, np.random.default_rng(0)))  # same seed
    boundary_sizes = {sum(1 for s in score.values() if s == min(score[i] for i in picks[0]))}
    if n < 60 and boundary_sizes.pop() > 1:  # a tie at the boundary: the seeds pick differently
        assert len({tuple(p) for p in picks}) > 1


def test_neighbour_ties_go_to_the_lower_index_and_duplicates_count() -> None:
    coords = embed(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.0]]))
    near = nearest_neighbours(coords, 3)
    assert near[0].tolist() == [4, 1, 2]  # the duplicate first, then the three at distance 1 by index
    assert near[4].tolist() == [0, 1, 2]


def test_embed_is_integer_valued_and_projects_wide_inputs() -> None:
    rng = np.random.default_rng(0)
    narrow = rng.normal(size=(10, 8))
    wide = rng.normal(size=(10, 3, 20, 20)).astype(np.float32)
    a, b = embed(narrow), embed(wide)
    assert a.shape == (10, 8) and b.shape == (10, PROJECTED_DIMS)
    for c in (a, b):
        assert np.array_equal(c, np.rint(c)) and np.abs(c).max() <= 2**16
    np.testing.assert_array_equal(b, embed(wide.copy()))  # the projection is fixed
    # a sample's coordinates do not depend on which other samples are embedded with it, up to the common scale
    np.testing.assert_allclose(embed(wide[:5]) / np.abs(embed(wide[:5])).max(),
                               (b[:5] / np.abs(b[:5]).max()), atol=2e-5)


def test_atypicality_of_tiny_pools() -> None:
    assert atypicality(np.zeros((1, 3)), np.array([2])).tolist() == [0]
    assert atypicality(np.array([[0.0], [1.0]]), np.array([0, 1])).tolist() == [1, 1]
    assert atypicality(np.zeros((4, 2)), np.array([0, 0, 1, 1])).tolist() == [2, 2, 2, 2]  # all identical


@pytest.mark.parametrize(("n", "m"), [(1, 1), (5, 1), (6, 2), (8, 2), (9, 3), (10, 3)])
def test_fewest_classes(n, m) -> None:
    assert fewest_classes(np.array([2, 5, 3]), n) == m


def test_fewest_classes_refuses_too_many() -> None:
    with pytest.raises(ValueError, match="11 samples do not fit"):
        fewest_classes(np.array([2, 5, 3]), 11)


def _brute_fewest(counts: dict[int, int], n: int) -> int:
    for m in range(1, len(counts) + 1):
        if any(sum(counts[c] for c in cs) >= n for cs in combinations(counts, m)):
            return m
    raise AssertionError("unreachable")


def test_concentrated_covers_the_fewest_classes_possible() -> None:
    for seed in range(40):
        rng = np.random.default_rng(seed)
        n_classes = int(rng.integers(2, 7))
        sizes = rng.integers(1, 15, size=n_classes)
        labels = np.repeat(rng.permutation(20)[:n_classes], sizes)
        pool = np.sort(rng.choice(1000, size=len(labels), replace=False))
        n = int(rng.integers(1, len(labels)))
        picked = concentrated(pool, labels, n, np.random.default_rng(seed))
        assert len(picked) == n and list(picked) == sorted(set(picked.tolist())) and set(picked) <= set(pool)
        covered = set(labels[np.isin(pool, picked)].tolist())
        counts = {int(c): int(k) for c, k in zip(*np.unique(labels, return_counts=True))}
        assert len(covered) == _brute_fewest(counts, n) == fewest_classes(sizes, n), (seed, counts, n)


def test_concentrated_draws_the_classes_by_seed() -> None:
    labels = np.repeat(np.arange(6), 10)
    pool = np.arange(60)
    picks = {tuple(concentrated(pool, labels, 4, np.random.default_rng(s))) for s in range(12)}
    classes = {int(labels[p[0]]) for p in picks}
    assert all(len({int(labels[i]) for i in p}) == 1 for p in picks)  # one class each time
    assert len(classes) >= 3  # different seeds forget from different classes
    np.testing.assert_array_equal(concentrated(pool, labels, 4, np.random.default_rng(3)),
                                  concentrated(pool, labels, 4, np.random.default_rng(3)))


def test_concentrated_fills_only_feasible_classes() -> None:
    # 12 samples from classes of 10, 6, 3, 2: two classes are needed, and the pair must hold 12: (10, x) or (6, ...)
    # -- only 10+6, 10+3, 10+2 work, so class 0 (the 10) is always one of them
    labels = np.repeat(np.arange(4), [10, 6, 3, 2])
    for s in range(10):
        picked = concentrated(np.arange(21), labels, 12, np.random.default_rng(s))
        covered = set(labels[picked].tolist())
        assert len(covered) == 2 and 0 in covered


def test_uniform_is_the_original_draw() -> None:
    pool = np.arange(0, 300, 3)
    a = uniform(pool, 17, np.random.default_rng(4))
    b = np.sort(np.random.default_rng(4).choice(pool, size=17, replace=False))
    np.testing.assert_array_equal(a, b)
