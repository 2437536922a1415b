"""Membership inference attacks (DESIGN §8): the entropy attack and offline LiRA.

Entropy attack (``MIA``, ``MIA_attack_acc``, ``MIA_thr``): members are retained train samples, non-members
are test samples; both are class-balanced before the attack. A logistic regression on one feature, the
entropy of the softmax output, is then applied to the targets (the forgotten samples D_U*).

Offline LiRA (``LiRA_AUC``, ``LiRA_TPR1``, ``LiRA_TPR5``): per example, the margin φ of the target model is
standardised against the margins of shadow models that never saw it (:func:`margins`, :func:`lira_scores`,
:func:`lira_metrics`). Pure: numpy + scikit-learn, seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np
from sklearn.linear_model import LogisticRegression

from clu import seeding
from clu.metrics import class_balanced_indices

__all__ = [
    "LIRA_PER_EXAMPLE_VARIANCE",
    "MIAResult",
    "entropy_mia",
    "lira_metrics",
    "lira_scores",
    "margins",
    "softmax_entropy",
    "tpr_at_fpr",
]

LIRA_PER_EXAMPLE_VARIANCE = 16
"""From this many shadows on, LiRA uses a per-example variance; below it one global (pooled) variance."""


def softmax_entropy(probs: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Per-row entropy ``-sum p log p`` (natural log, ``p`` clipped at ``eps`` inside the log)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"softmax_entropy: expected a 2-D (n, classes) array, got shape {p.shape}")
    return -np.sum(p * np.log(np.maximum(p, eps)), axis=1)


@dataclass(frozen=True)
class MIAResult:
    """Outcome of :func:`entropy_mia`; all fields ``None`` when the attack cannot be run."""

    member_rate: float | None
    """Fraction of targets the logistic attack predicts "member"; reported as ``MIA``."""
    attack_acc: float | None
    """The attack's accuracy on its held-out half of members vs non-members; ``MIA_attack_acc``."""
    member_rate_thr: float | None
    """Fraction of targets with entropy below the median entropy of the balanced non-members;
    reported as ``MIA_thr``."""


_NONE = MIAResult(member_rate=None, attack_acc=None, member_rate_thr=None)


def _check(probs: np.ndarray, labels: np.ndarray | None, name: str) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"entropy_mia: {name} must be 2-D (n, classes), got shape {p.shape}")
    if labels is not None and np.asarray(labels).ravel().shape[0] != p.shape[0]:
        raise ValueError(f"entropy_mia: {name} has {p.shape[0]} rows but {np.asarray(labels).size} labels")
    return p


def _half_split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random split of ``range(n)`` into a train half (floor) and a test half (ceil)."""
    perm = rng.permutation(n)
    return perm[: n // 2], perm[n // 2 :]


def entropy_mia(
    member_probs: np.ndarray,
    member_labels: np.ndarray,
    nonmember_probs: np.ndarray,
    nonmember_labels: np.ndarray,
    target_probs: np.ndarray,
    seed: int,
) -> MIAResult:
    """Run the entropy MIA and score the targets.

    1. Class-balance members vs non-members (:func:`clu.metrics.class_balanced_indices`).
    2. Split each side 50/50 at random into attack-train and attack-test (stratified by membership).
    3. Fit ``LogisticRegression`` on entropy (member = 1); ``attack_acc`` on the held-out half,
       ``member_rate`` = mean prediction on the targets.
    4. ``member_rate_thr``: member iff entropy < median entropy of the balanced non-members.

    Deterministic for a given ``seed``. Returns all-``None`` fields when there are no targets or fewer
    than 2 samples on either side after balancing.
    """
    m_probs = _check(member_probs, member_labels, "member_probs")
    n_probs = _check(nonmember_probs, nonmember_labels, "nonmember_probs")
    t_probs = np.asarray(target_probs, dtype=np.float64)
    if t_probs.size == 0:
        return _NONE
    t_probs = _check(t_probs, None, "target_probs")

    rng = seeding.mia(seed)
    idx_m, idx_n = class_balanced_indices(member_labels, nonmember_labels, rng)
    if idx_m.size < 2 or idx_n.size < 2:
        return _NONE

    h_m = softmax_entropy(m_probs[idx_m])
    h_n = softmax_entropy(n_probs[idx_n])
    h_t = softmax_entropy(t_probs)

    # Fixed-threshold attack: low entropy (confident) -> member.
    threshold = float(np.median(h_n))
    member_rate_thr = float(np.mean(h_t < threshold))

    # Logistic attack on a stratified 50/50 split.
    tr_m, te_m = _half_split(h_m.size, rng)
    tr_n, te_n = _half_split(h_n.size, rng)
    x_train = np.concatenate([h_m[tr_m], h_n[tr_n]])[:, None]
    y_train = np.concatenate([np.ones(tr_m.size), np.zeros(tr_n.size)]).astype(np.int64)
    x_test = np.concatenate([h_m[te_m], h_n[te_n]])[:, None]
    y_test = np.concatenate([np.ones(te_m.size), np.zeros(te_n.size)]).astype(np.int64)

    clf = LogisticRegression()  # lbfgs: deterministic, no randomness to seed
    clf.fit(x_train, y_train)
    attack_acc = float(np.mean(clf.predict(x_test) == y_test))
    member_rate = float(np.mean(clf.predict(h_t[:, None])))
    return MIAResult(member_rate=member_rate, attack_acc=attack_acc, member_rate_thr=member_rate_thr)


# --------------------------------------------------------------------------------------- offline LiRA


def margins(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """φ = the true-class logit minus the log-sum-exp of the other logits, per row (float64).

    Equals log(p_y / (1 − p_y)) of the softmax, computed without forming p (stable for confident rows).
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels).ravel().astype(np.int64)
    if z.ndim != 2 or z.shape[0] != y.size:
        raise ValueError(f"margins: expected (n, classes) logits for {y.size} labels, got shape {z.shape}")
    if z.shape[1] < 2:
        raise ValueError(f"margins: needs at least 2 classes, got shape {z.shape}")
    if z.shape[0] == 0:
        return np.empty(0, dtype=np.float64)
    rows = np.arange(y.size)
    true = z[rows, y]
    others = z.copy()
    others[rows, y] = -np.inf
    top = np.max(others, axis=1)
    lse = top + np.log(np.sum(np.exp(others - top[:, None]), axis=1))
    return true - lse


def lira_scores(target: np.ndarray, shadows: np.ndarray) -> np.ndarray:
    """One-sided standardised score (target − μ) / σ per example; higher = more member-like.

    ``shadows`` has shape (K, n): the margins of K models that never trained on the examples. μ is the
    per-example mean over them; σ the per-example standard deviation when K ≥ 16, else one global
    standard deviation of the pooled residuals (shadow − μ) over all examples (few shadows make a
    per-example variance too noisy). σ is floored at 1e-12, so with one shadow the score ranks t − μ.
    """
    t = np.asarray(target, dtype=np.float64).ravel()
    s = np.asarray(shadows, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != t.size:
        raise ValueError(f"lira_scores: shadows must be (K, {t.size}), got shape {s.shape}")
    if s.shape[0] == 0:
        raise ValueError("lira_scores: needs at least one shadow model")
    mu = s.mean(axis=0)
    resid = s - mu
    if s.shape[0] >= LIRA_PER_EXAMPLE_VARIANCE:
        sigma = np.sqrt(np.mean(resid**2, axis=0))
    else:
        sigma = np.full(t.size, math.sqrt(float(np.mean(resid**2))) if t.size else 0.0)
    return (t - mu) / np.maximum(sigma, 1e-12)


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(pos > neg) + ½ P(pos = neg) (the Mann–Whitney AUC, ties counted half)."""
    neg_sorted = np.sort(neg)
    below = np.searchsorted(neg_sorted, pos, side="left")
    at_or_below = np.searchsorted(neg_sorted, pos, side="right")
    return float(np.sum(below + 0.5 * (at_or_below - below)) / (pos.size * neg.size))


def tpr_at_fpr(pos: np.ndarray, neg: np.ndarray, fpr: float) -> float | None:
    """Highest TPR of a threshold rule "member iff score > t" whose FPR is ≤ ``fpr``.

    ``None`` when there are no positives or fewer than 1/fpr negatives (the rate cannot be resolved).
    """
    p = np.asarray(pos, dtype=np.float64).ravel()
    n = np.sort(np.asarray(neg, dtype=np.float64).ravel())[::-1]
    allowed = math.floor(fpr * n.size + 1e-9)
    if p.size == 0 or allowed < 1:
        return None
    threshold = n[allowed] if allowed < n.size else -np.inf
    return float(np.mean(p > threshold))


def lira_metrics(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> dict[str, float | None]:
    """``LiRA_AUC`` (None when a set is empty), ``LiRA_TPR1`` and ``LiRA_TPR5`` (TPR at ≤ 1 % / ≤ 5 % FPR)."""
    m = np.asarray(member_scores, dtype=np.float64).ravel()
    n = np.asarray(nonmember_scores, dtype=np.float64).ravel()
    return {
        "LiRA_AUC": _auc(m, n) if m.size and n.size else None,
        "LiRA_TPR1": tpr_at_fpr(m, n, 0.01),
        "LiRA_TPR5": tpr_at_fpr(m, n, 0.05),
    }
