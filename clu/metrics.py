"""Pure metric functions for continual learning–unlearning (DESIGN §8).

Everything here is numpy only and side-effect free. A metric that cannot be computed (empty input,
too few tasks, all parts missing) returns ``None`` rather than NaN, so results serialise to ``null``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "GAP_METRICS",
    "GAP_METRICS_L",
    "KLOM_MIN_REPLICAS",
    "accuracy",
    "kl_divergence",
    "gap",
    "avg_gap",
    "average_incremental_accuracy",
    "bwt",
    "forgetting",
    "class_balanced_indices",
    "klom",
    "klom_summary",
]

GAP_METRICS: tuple[str, ...] = ("TA", "RA", "FA", "MIA")
"""Metrics whose gaps to the oracle are averaged into ``AvgGap`` (SFR-on's definition)."""
GAP_METRICS_L: tuple[str, ...] = ("TA", "RA", "FA", "LiRA_AUC")
"""Metrics whose gaps are averaged into ``AvgGap_L`` (LiRA's AUC in place of the entropy ``MIA``)."""
KLOM_MIN_REPLICAS = 16
"""KLoM compares distributions over replicas: below this many it is null."""


def _missing(value: float | None) -> bool:
    """True for ``None`` and for non-finite numbers (NaN/inf count as missing)."""
    return value is None or not math.isfinite(float(value))


def accuracy(pred: np.ndarray, y: np.ndarray) -> float | None:
    """Fraction of ``pred`` equal to ``y``; ``None`` for empty input."""
    pred = np.asarray(pred).ravel()
    y = np.asarray(y).ravel()
    if pred.shape != y.shape:
        raise ValueError(f"accuracy: pred has {pred.size} entries but y has {y.size}")
    if y.size == 0:
        return None
    return float(np.mean(pred == y))


def kl_divergence(p_ref: np.ndarray, p_model: np.ndarray, eps: float = 1e-12) -> float | None:
    """Mean over rows of KL(p_ref ‖ p_model), natural log.

    Rows are probability vectors; terms with ``p_ref == 0`` contribute 0 and both sides are clipped
    at ``eps`` inside the log. A 1-D input is one row. ``None`` when there are no rows.
    """
    p = np.asarray(p_ref, dtype=np.float64)
    q = np.asarray(p_model, dtype=np.float64)
    if p.ndim == 1:
        p = p[None, :]
    if q.ndim == 1:
        q = q[None, :]
    if p.shape != q.shape or p.ndim != 2:
        raise ValueError(f"kl_divergence: shapes {p.shape} and {q.shape} differ or are not 2-D")
    if p.shape[0] == 0:
        return None
    terms = p * (np.log(np.maximum(p, eps)) - np.log(np.maximum(q, eps)))
    return float(np.mean(np.sum(terms, axis=1)))


def gap(value: float | None, oracle: float | None) -> float | None:
    """``|value - oracle|``; ``None`` if either is missing (``None`` or NaN)."""
    if _missing(value) or _missing(oracle):
        return None
    return abs(float(value) - float(oracle))  # type: ignore[arg-type]


def avg_gap(gaps: Mapping[str, float | None], metrics: Sequence[str] = GAP_METRICS) -> float | None:
    """Mean of the available gaps among ``metrics`` (``AvgGap``; ``AvgGap_L`` with :data:`GAP_METRICS_L`).

    ``gaps`` is keyed by metric name (``{"TA": 0.01, "RA": 0.0, "FA": None, "MIA": 0.2}``); other keys
    are ignored, absent/``None``/NaN entries are skipped. ``None`` when no gap is available.
    """
    vals = [float(gaps[k]) for k in metrics if k in gaps and not _missing(gaps[k])]  # type: ignore[arg-type]
    if not vals:
        return None
    return float(np.mean(vals))


def average_incremental_accuracy(ta_after_learn: Sequence[float]) -> float | None:
    """Mean TA after learn events (missing entries skipped); ``None`` when none are available."""
    vals = [float(v) for v in ta_after_learn if not _missing(v)]
    if not vals:
        return None
    return float(np.mean(vals))


def _bwt_pairs(acc: np.ndarray) -> list[tuple[int, int]]:
    """(column j, row where j was learned) for every task usable in BWT/forgetting.

    A task is usable when it was learned (first non-NaN row) before the last row and still has a
    finite accuracy in the last row. Returns [] when the matrix has fewer than 2 tasks.
    """
    if acc.ndim != 2:
        raise ValueError(f"accuracy matrix must be 2-D, got shape {acc.shape}")
    n_rows, n_tasks = acc.shape
    if n_rows < 2 or n_tasks < 2:
        return []
    last = n_rows - 1
    finite = np.isfinite(acc)
    pairs = []
    for j in range(n_tasks):
        rows = np.flatnonzero(finite[:, j])
        if rows.size and rows[0] < last and finite[last, j]:
            pairs.append((j, int(rows[0])))
    return pairs


def bwt(acc: np.ndarray) -> float | None:
    """Backward transfer (Lopez-Paz & Ranzato 2017) from an accuracy matrix.

    ``acc[i, j]`` is the test accuracy on task j after the i-th learn event, NaN where task j was not
    yet learned or was forgotten. BWT = mean over tasks j learned before the last row of
    ``acc[last, j] - acc[r_j, j]``, r_j the first non-NaN row of column j. Tasks with NaN in the last
    row are skipped. ``None`` with fewer than 2 tasks or no usable task.
    """
    a = np.asarray(acc, dtype=np.float64)
    pairs = _bwt_pairs(a)
    if not pairs:
        return None
    last = a.shape[0] - 1
    return float(np.mean([a[last, j] - a[r, j] for j, r in pairs]))


def forgetting(acc: np.ndarray) -> float | None:
    """Average forgetting (Chaudhry et al. 2018) from an accuracy matrix (see :func:`bwt`).

    Mean over the same tasks as BWT of ``max(acc[:last, j]) - acc[last, j]`` (NaN entries skipped).
    Can be negative when a task improved. ``None`` with fewer than 2 tasks or no usable task.
    """
    a = np.asarray(acc, dtype=np.float64)
    pairs = _bwt_pairs(a)
    if not pairs:
        return None
    last = a.shape[0] - 1
    vals = []
    for j, _ in pairs:
        earlier = a[:last, j]
        vals.append(np.max(earlier[np.isfinite(earlier)]) - a[last, j])
    return float(np.mean(vals))


def class_balanced_indices(
    y_a: np.ndarray, y_b: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced subsample of two labelled sets.

    For each class present in both ``y_a`` and ``y_b`` pick ``min(count_a, count_b)`` indices from
    each side uniformly at random without replacement (classes visited in sorted order, so the draw
    is deterministic for a given ``rng`` state). Returns the two sorted int64 index arrays.
    """
    y_a = np.asarray(y_a).ravel()
    y_b = np.asarray(y_b).ravel()
    out_a: list[np.ndarray] = []
    out_b: list[np.ndarray] = []
    for c in np.intersect1d(y_a, y_b):
        ia = np.flatnonzero(y_a == c)
        ib = np.flatnonzero(y_b == c)
        m = min(ia.size, ib.size)
        out_a.append(rng.choice(ia, size=m, replace=False))
        out_b.append(rng.choice(ib, size=m, replace=False))
    idx_a = np.sort(np.concatenate(out_a)).astype(np.int64) if out_a else np.empty(0, np.int64)
    idx_b = np.sort(np.concatenate(out_b)).astype(np.int64) if out_b else np.empty(0, np.int64)
    return idx_a, idx_b


def klom(oracle_phi: np.ndarray, method_phi: np.ndarray, bins: int = 20, eps: float = 1e-6) -> np.ndarray:
    """Per-sample KL(oracle ‖ method) between histograms of margins over replicas (KLoM).

    ``oracle_phi`` has shape (R_o, n), ``method_phi`` (R_m, n): sample i's margin under each replica. For
    each sample both columns are binned into ``bins`` equal-width bins over their pooled range (the top
    edge falls in the last bin; a zero-width range puts everything in one bin), empty bins get ``eps``
    and each histogram is renormalised to sum to 1. Returns the n divergences (natural log).
    """
    o = np.asarray(oracle_phi, dtype=np.float64)
    m = np.asarray(method_phi, dtype=np.float64)
    if o.ndim != 2 or m.ndim != 2 or o.shape[1] != m.shape[1] or not o.shape[0] or not m.shape[0]:
        raise ValueError(f"klom: expected (R_o, n) and (R_m, n) with R ≥ 1, got {o.shape} and {m.shape}")
    lo = np.minimum(o.min(axis=0, initial=np.inf), m.min(axis=0, initial=np.inf))
    hi = np.maximum(o.max(axis=0, initial=-np.inf), m.max(axis=0, initial=-np.inf))
    width = np.where(hi > lo, hi - lo, 1.0)

    def hist(x: np.ndarray) -> np.ndarray:
        idx = np.clip(np.floor((x - lo) / width * bins).astype(np.int64), 0, bins - 1)
        counts = np.zeros((x.shape[1], bins))
        np.add.at(counts, (np.broadcast_to(np.arange(x.shape[1]), x.shape), idx), 1.0)
        p = counts / x.shape[0]
        p[p == 0] = eps
        return p / p.sum(axis=1, keepdims=True)

    p, q = hist(o), hist(m)
    return np.sum(p * (np.log(p) - np.log(q)), axis=1)


def klom_summary(per_sample: np.ndarray) -> dict[str, float | None]:
    """``KLoM`` (mean over samples) and ``KLoM_p95`` (95th percentile); None for no samples."""
    v = np.asarray(per_sample, dtype=np.float64).ravel()
    if v.size == 0:
        return {"KLoM": None, "KLoM_p95": None}
    return {"KLoM": float(np.mean(v)), "KLoM_p95": float(np.percentile(v, 95))}
