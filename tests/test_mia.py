"""Unit tests for clu.mia (DESIGN §8: MIA, MIA_attack_acc, MIA_thr; offline LiRA)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from clu.mia import MIAResult, entropy_mia, lira_metrics, lira_scores, margins, softmax_entropy, tpr_at_fpr
from clu.models import MLP

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


# --- offline LiRA -----------------------------------------------------------------------------


def test_margins_hand_computed() -> None:
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 3.0, 1.0]])
    labels = np.array([0, 1, 2])
    phi = margins(logits, labels)
    # row 0: 2 - log(e + 1) = 0.686738; row 1: 0 - log 2; row 2: 1 - log(1 + e^3) = -2.048587
    assert phi == pytest.approx([2 - math.log(math.e + 1), -math.log(2), 1 - math.log(1 + math.e**3)])
    # equals log(p / (1 - p)) of the softmax
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    py = p[np.arange(3), labels]
    assert phi == pytest.approx(np.log(py / (1 - py)))
    assert phi.dtype == np.float64


def test_margins_are_stable_for_huge_logits() -> None:
    phi = margins(np.array([[1000.0, 0.0], [0.0, 1000.0]], dtype=np.float32), np.array([0, 0]))
    assert phi == pytest.approx([1000.0, -1000.0])
    assert margins(np.empty((0, 3)), np.empty(0, dtype=int)).shape == (0,)
    with pytest.raises(ValueError, match="labels"):
        margins(np.zeros((2, 3)), np.array([0]))


def test_lira_scores_global_variance_below_16_shadows() -> None:
    shadows = np.array([[0.0, 10.0], [2.0, 12.0]])  # mu = (1, 11); residuals all ±1 -> global sigma 1
    assert lira_scores(np.array([3.0, 11.0]), shadows) == pytest.approx([2.0, 0.0])


def test_lira_scores_per_example_variance_from_16_shadows() -> None:
    # example 0: shadows ±1 around 0 (sigma 1); example 1: ±4 around 0 (sigma 4)
    signs = np.array([1.0, -1.0] * 8)
    shadows = np.stack([signs, 4 * signs], axis=1)
    assert lira_scores(np.array([2.0, 2.0]), shadows) == pytest.approx([2.0, 0.5])
    # with 15 of them the variance is pooled: sigma^2 = (15 * 1 + 15 * 16) / 30 -> same sigma for both
    s15 = np.concatenate([shadows[:14], [[0.0, 0.0]]])
    sc = lira_scores(np.array([2.0, 2.0]), s15)
    assert sc[0] == pytest.approx(sc[1])
    with pytest.raises(ValueError, match="shadow"):
        lira_scores(np.zeros(2), np.empty((0, 2)))


def test_lira_metrics_on_gaussian_scores_match_the_theory() -> None:
    # members N(d, 1), non-members N(0, 1): AUC = Phi(d / sqrt 2), TPR at FPR a = 1 - Phi(z_{1-a} - d)
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    d = 1.0
    out = lira_metrics(rng.normal(d, 1, 200_000), rng.normal(0, 1, 200_000))
    assert out["LiRA_AUC"] == pytest.approx(norm.cdf(d / math.sqrt(2)), abs=0.005)
    assert out["LiRA_TPR1"] == pytest.approx(norm.sf(norm.isf(0.01) - d), abs=0.01)
    assert out["LiRA_TPR5"] == pytest.approx(norm.sf(norm.isf(0.05) - d), abs=0.01)
    same = lira_metrics(rng.normal(0, 1, 200_000), rng.normal(0, 1, 200_000))
    assert same["LiRA_AUC"] == pytest.approx(0.5, abs=0.005)
    assert same["LiRA_TPR1"] == pytest.approx(0.01, abs=0.003)


def test_lira_metrics_hand_computed() -> None:
    # AUC: pairs (m > n) of members {1, 3} vs non-members {0, 1, 2}: 1 > 0, 1 = 1 (half), 3 > all -> 4.5 / 6
    out = lira_metrics(np.array([1.0, 3.0]), np.array([0.0, 1.0, 2.0]))
    assert out["LiRA_AUC"] == pytest.approx(0.75)
    assert out["LiRA_TPR1"] is None and out["LiRA_TPR5"] is None  # 3 non-members cannot resolve 1 % or 5 %
    # 20 non-members 0..19: at 5 % one false positive is allowed -> threshold 18 (member iff score > 18)
    neg = np.arange(20, dtype=float)
    assert tpr_at_fpr(np.array([18.0, 18.5, 25.0, 0.0]), neg, 0.05) == pytest.approx(0.5)
    assert tpr_at_fpr(np.array([18.5]), neg, 0.01) is None  # fewer than 100 non-members
    assert tpr_at_fpr(np.array([]), neg, 0.05) is None
    empty = lira_metrics(np.array([]), neg)
    assert empty == {"LiRA_AUC": None, "LiRA_TPR1": None, "LiRA_TPR5": None}
    assert lira_metrics(np.array([1.0]), np.array([]))["LiRA_AUC"] is None


def _train_mlp(x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int = 60) -> torch.nn.Module:
    torch.manual_seed(seed)
    order = torch.Generator().manual_seed(seed)
    model = MLP(x.shape[1], (256, 256), C)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for b in torch.randperm(len(y), generator=order).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
    return model


@pytest.mark.slow
def test_lira_has_power_on_a_memorised_set() -> None:
    """A model trained with a known set vs 8 shadow retrains without it (issue 11's acceptance case).

    Overlapping Gaussian classes and 60 epochs: the MLP memorises its training points. The attack must
    find the set (AUC ≥ 0.55, TPR at 1 % FPR ≥ 0.03) and must not find it in an independent retrain.
    """
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    dim = 32
    means = rng.normal(0.0, 2.0 / math.sqrt(dim), (C, dim))
    labels = rng.integers(0, C, 900)
    x = torch.tensor(means[labels] + rng.normal(0.0, 1.0, (900, dim)), dtype=torch.float32)
    y = torch.tensor(labels)
    members, nonmembers, base = np.arange(200), np.arange(200, 600), np.arange(600, 900)

    def phi(model: torch.nn.Module) -> np.ndarray:
        with torch.no_grad():
            return margins(model(x).numpy(), labels)

    with_set = np.concatenate([base, members])
    target = phi(_train_mlp(x[with_set], y[with_set], seed=100))
    independent = phi(_train_mlp(x[base], y[base], seed=200))
    shadows = np.stack([phi(_train_mlp(x[base], y[base], seed=300 + j)) for j in range(8)])

    def attack(model_phi: np.ndarray) -> dict[str, float | None]:
        s = lira_scores(model_phi, shadows)
        return lira_metrics(s[members], s[nonmembers])

    hit, miss = attack(target), attack(independent)
    assert hit["LiRA_AUC"] >= 0.55 and hit["LiRA_TPR1"] >= 0.03
    assert miss["LiRA_AUC"] <= 0.55
    assert hit["LiRA_TPR1"] >= 3 * miss["LiRA_TPR1"]
