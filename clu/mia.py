"""Entropy-based membership inference attack (DESIGN §8: ``MIA``, ``MIA_attack_acc``, ``MIA_thr``).

Members are retained train samples, non-members are test samples; both are class-balanced before the
attack. The attack is a logistic regression on one feature, the entropy of the softmax output, and is
then applied to the targets (the forgotten samples D_U*). Pure: numpy + scikit-learn, seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from clu import seeding
from clu.metrics import class_balanced_indices

__all__ = ["MIAResult", "entropy_mia", "softmax_entropy"]


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
