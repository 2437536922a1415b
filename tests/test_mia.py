"""Unit tests for clu.mia (DESIGN §8: MIA, MIA_attack_acc, MIA_thr)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from clu.mia import MIAResult, entropy_mia, softmax_entropy

C = 10


def _confident(n: int, rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Nearly one-hot rows on the label: entropy well below 0.5 nats."""
    probs = rng.dirichlet(np.full(C, 0.05), size=n) * 0.02
    probs[np.arange(n), labels] += 0.98
    return probs / probs.sum(axis=1, keepdims=True)


def _diffuse(n: int, rng: np.random.Generator) -> np.ndarray:
    """Close to uniform rows: entropy close to ln 10 = 2.30 nats."""
    return rng.dirichlet(np.full(C, 50.0), size=n)


# --- entropy ----------------------------------------------------------------------------------


def test_softmax_entropy_hand_computed() -> None:
    probs = np.array(
        [
            [0.25, 0.25, 0.25, 0.25],  # ln 4 = 1.386294...
            [1.0, 0.0, 0.0, 0.0],  # 0 (0*log(clip) = 0)
            [0.5, 0.5, 0.0, 0.0],  # ln 2 = 0.693147...
            [0.7, 0.1, 0.1, 0.1],  # -(0.7 ln .7 + 3*.1 ln .1) = 0.249672 + 0.690776 = 0.940448
        ]
    )
    h = softmax_entropy(probs)
    assert h == pytest.approx([math.log(4), 0.0, math.log(2), 0.940448], abs=1e-6)


# --- the attack -------------------------------------------------------------------------------


def test_separable_members_and_nonmembers() -> None:
    rng = np.random.default_rng(0)
    y_m = rng.integers(0, C, size=200)
    y_n = rng.integers(0, C, size=200)
    m_probs = _confident(200, rng, y_m)
    n_probs = _diffuse(200, rng)
    assert softmax_entropy(m_probs).max() < softmax_entropy(n_probs).min()  # truly separable

    member_like = _confident(30, rng, rng.integers(0, C, size=30))
    res = entropy_mia(m_probs, y_m, n_probs, y_n, member_like, seed=1)
    assert res.attack_acc == pytest.approx(1.0)
    assert res.member_rate == pytest.approx(1.0)
    assert res.member_rate_thr == pytest.approx(1.0)

    # exactly uniform rows have the maximum entropy ln 10: above every non-member's, so never "member"
    nonmember_like = np.full((30, C), 1.0 / C)
    res = entropy_mia(m_probs, y_m, n_probs, y_n, nonmember_like, seed=1)
    assert res.attack_acc == pytest.approx(1.0)
    assert res.member_rate == pytest.approx(0.0)
    assert res.member_rate_thr == pytest.approx(0.0)


def test_same_distribution_is_chance() -> None:
    rng = np.random.default_rng(123)
    n = 400
    m_probs = rng.dirichlet(np.ones(C), size=n)
    n_probs = rng.dirichlet(np.ones(C), size=n)
    y_m = rng.integers(0, C, size=n)
    y_n = rng.integers(0, C, size=n)
    targets = rng.dirichlet(np.ones(C), size=100)
    for seed in range(3):
        res = entropy_mia(m_probs, y_m, n_probs, y_n, targets, seed=seed)
        assert res.attack_acc is not None and 0.4 <= res.attack_acc <= 0.6
        # median threshold of the same distribution: about half the targets fall below it
        assert res.member_rate_thr is not None and 0.3 <= res.member_rate_thr <= 0.7


def test_class_balancing_drives_the_threshold() -> None:
    # 3 classes; low = [.98,.01,.01]: H = -(.98 ln .98 + 2*.01 ln .01) = 0.019799 + 0.092103 = 0.111902
    #            high = uniform [1/3]*3: H = ln 3 = 1.098612
    low = np.array([0.98, 0.01, 0.01])
    high = np.full(3, 1 / 3)
    # non-members: 2 of class 0 with low entropy, 100 of class 1 with high entropy
    n_probs = np.vstack([np.tile(low, (2, 1)), np.tile(high, (100, 1))])
    y_n = np.array([0] * 2 + [1] * 100)
    # members: 2 of class 0, 2 of class 1 -> balanced non-members = 2 low + 2 high
    m_probs = np.vstack([np.tile(low, (2, 1)), np.tile(low, (2, 1))])
    y_m = np.array([0, 0, 1, 1])
    # balanced median = (0.111902 + 1.098612) / 2 = 0.605257; without balancing it would be ln 3.
    # target [.7,.15,.15]: H = -(.7 ln .7 + 2*.15 ln .15) = 0.7*0.356675 + 0.3*1.897120
    #                                                     = 0.249672 + 0.569136 = 0.818808
    # 0.605257 < 0.818808 < 1.098612  -> not a member only if the non-members were balanced
    target = np.array([[0.7, 0.15, 0.15]])
    assert softmax_entropy(target)[0] == pytest.approx(0.818808, abs=1e-6)
    res = entropy_mia(m_probs, y_m, n_probs, y_n, target, seed=0)
    assert res.member_rate_thr == 0.0


def test_class_balancing_drops_unshared_classes() -> None:
    # members only class 0, non-members only class 1: nothing shared -> attack cannot run
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(C), size=20)
    res = entropy_mia(probs, np.zeros(20, int), probs, np.ones(20, int), probs[:5], seed=0)
    assert res == MIAResult(None, None, None)


def test_fewer_than_two_per_side_is_none() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(C), size=20)
    # only one shared sample (class 3 appears once on the member side)
    y_m = np.array([3] + [0] * 19)
    y_n = np.array([3] * 20)
    res = entropy_mia(probs, y_m, probs, y_n, probs[:5], seed=0)
    assert res == MIAResult(None, None, None)


def test_empty_targets_give_none() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(C), size=50)
    y = rng.integers(0, C, size=50)
    res = entropy_mia(probs, y, probs, y, np.empty((0, C)), seed=0)
    assert res.member_rate is None and res.attack_acc is None and res.member_rate_thr is None


def test_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(7)
    n = 150
    m_probs = rng.dirichlet(np.full(C, 0.3), size=n)
    n_probs = rng.dirichlet(np.ones(C), size=n + 37)
    y_m = rng.integers(0, C, size=n)
    y_n = rng.integers(0, C, size=n + 37)
    targets = rng.dirichlet(np.full(C, 0.5), size=60)
    a = entropy_mia(m_probs, y_m, n_probs, y_n, targets, seed=5)
    b = entropy_mia(m_probs.copy(), y_m.copy(), n_probs.copy(), y_n.copy(), targets.copy(), seed=5)
    assert a == b
    assert all(v is not None and 0.0 <= v <= 1.0 for v in dataclasses.astuple(a))


def test_result_is_frozen() -> None:
    res = MIAResult(0.5, 0.5, 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.member_rate = 0.1  # type: ignore[misc]
