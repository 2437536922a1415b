"""Statistics for sweep tables (DESIGN §8, §13): confidence intervals, paired tests, Holm, leaders.

Pure functions over per-seed values (scipy). Arrays passed side by side are aligned by seed; a NaN marks
a seed where a metric does not apply, and a pair with a NaN on either side is left out of a paired test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from types import ModuleType


def _sps() -> ModuleType:
    """scipy.stats, imported on first use: it takes about a second, and the CLI imports this module to validate."""
    from scipy import stats

    return stats

__all__ = [
    "ALPHA",
    "WILCOXON_MIN_N",
    "Comparison",
    "Rule",
    "above_floor",
    "ci95",
    "compare",
    "floor_p",
    "holm",
    "leaders",
    "paired_p",
    "wilcoxon_p",
]

ALPHA = 0.05
"""Significance level of every test here."""
WILCOXON_MIN_N = 10
"""The Wilcoxon signed-rank p-value is reported from this many paired seeds on."""
EXACT_MAX_N = 13
"""Up to this many pairs with zero or tied differences, scipy's Wilcoxon runs a permutation test over all 2^n
sign patterns (~0.4 s a call); :func:`wilcoxon_p` enumerates them itself (same value, a thousand times faster)."""

Rule = Literal["min", "max"] | tuple[Literal["target"], float]
"""Which value is best: the lowest, the highest, or the closest to a target."""


def _finite(values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    a = np.asarray([np.nan if v is None else v for v in np.asarray(values, dtype=object).ravel()], dtype=np.float64)
    return a[np.isfinite(a)]


def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired test: {x.size} and {y.size} values are not aligned")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def _constant_difference(x: np.ndarray, y: np.ndarray) -> float | None:
    """The common difference when every pair differs by the same amount (up to rounding), else None.

    A t statistic is undefined there (zero variance); scipy would warn and return noise or NaN.
    """
    d = x - y
    scale = max(1.0, float(np.max(np.abs(x))), float(np.max(np.abs(y))))
    if float(np.ptp(d)) > 1e-12 * scale:
        return None
    mean = float(np.mean(d))
    return 0.0 if abs(mean) <= 1e-12 * scale else mean


def ci95(values: Sequence[float | None] | np.ndarray) -> float | None:
    """Half-width of the two-sided 95 % t confidence interval of the mean; None for n < 2 finite values."""
    v = _finite(values)
    if v.size < 2:
        return None
    return float(_sps().t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))


def paired_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test p-value (``ttest_rel``).

    1.0 with fewer than 2 pairs or identical pairs; 0.0 when every pair differs by the same non-zero amount.
    """
    x, y = _pairs(a, b)
    if x.size < 2:
        return 1.0
    constant = _constant_difference(x, y)
    if constant is not None:
        return 1.0 if constant == 0.0 else 0.0
    p = float(_sps().ttest_rel(x, y).pvalue)
    return p if math.isfinite(p) else 1.0


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value from 10 pairs on (None below); 1.0 when all pairs are equal."""
    x, y = _pairs(a, b)
    if x.size < WILCOXON_MIN_N:
        return None
    if _constant_difference(x, y) == 0.0:
        return 1.0
    d = x - y
    nonzero = d[d != 0]
    if x.size <= EXACT_MAX_N and (nonzero.size < d.size or np.unique(np.abs(nonzero)).size < nonzero.size):
        return _signed_rank_exact_p(nonzero)  # what scipy computes here, by a ~0.4 s permutation test
    p = float(_sps().wilcoxon(x, y).pvalue)
    return p if math.isfinite(p) else 1.0


def _signed_rank_exact_p(d: np.ndarray) -> float:
    """Two-sided exact signed-rank p-value of nonzero differences ``d`` (midranks for ties) by enumerating all
    2^n sign patterns: the value of scipy's ``wilcoxon`` permutation test for n <= 13 with ties or zeros (tested)."""
    ranks = _sps().rankdata(np.abs(d))
    t_obs = float(ranks[d > 0].sum())
    signs = ((np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1).astype(np.float64)
    t = signs @ ranks
    eps = 1e-12 * max(1.0, float(ranks.sum()))
    less, greater = float(np.mean(t <= t_obs + eps)), float(np.mean(t >= t_obs - eps))
    return min(1.0, 2.0 * min(less, greater))


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1), same keys."""
    order = sorted(pvalues, key=lambda k: pvalues[k])
    m = len(order)
    out: dict[str, float] = {}
    running = 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * pvalues[k]))
        out[k] = running
    return {k: out[k] for k in pvalues}


def _loss(values: np.ndarray, rule: Rule) -> np.ndarray:
    """Values turned into "lower is better"."""
    v = np.asarray(values, dtype=np.float64)
    if rule == "min":
        return v
    if rule == "max":
        return -v
    if isinstance(rule, tuple) and rule[0] == "target":
        return np.abs(v - float(rule[1]))
    raise ValueError(f"leaders: unknown rule {rule!r}")


@dataclass(frozen=True)
class Comparison:
    """One method against one rival on one metric (a row of ``stats.csv``)."""

    method: str
    rival: str
    t_p: float
    """Two-sided paired t-test p-value over seeds."""
    holm_p: float
    """``t_p`` Holm-corrected over the method's rivals."""
    wilcoxon_p: float | None
    """Wilcoxon signed-rank p-value (None below 10 seeds)."""


def compare(per_seed: Mapping[str, np.ndarray]) -> list[Comparison]:
    """Every method against every other (both directions), Holm-corrected over each method's rivals."""
    out: list[Comparison] = []
    for method, a in per_seed.items():
        rivals = [r for r in per_seed if r != method]
        raw = {r: paired_p(a, per_seed[r]) for r in rivals}
        adjusted = holm(raw)
        out += [Comparison(method, r, raw[r], adjusted[r], wilcoxon_p(a, per_seed[r])) for r in rivals]
    return out


def leaders(per_seed: Mapping[str, np.ndarray], rule: Rule) -> tuple[set[str], set[str]]:
    """``(bold, tied)`` for one column of a table.

    The best method is the one with the best mean under ``rule`` (methods with no finite value take no
    part). It is bold (``tied`` empty) when its paired t-tests over seeds against every other method are
    significant at 5 % after Holm correction over those rivals; otherwise nothing is bold and ``tied``
    holds the best and every method not significantly different from it. Fewer than 2 methods: no leader.
    """
    losses = {k: _loss(v, rule) for k, v in per_seed.items() if _finite(v).size}
    if len(losses) < 2:
        return set(), set()
    means = {k: float(np.nanmean(v)) for k, v in losses.items()}
    best = min(means, key=lambda k: means[k])  # first in order among equals
    adjusted = holm({r: paired_p(losses[best], v) for r, v in losses.items() if r != best})
    if all(p < ALPHA and means[best] < means[r] for r, p in adjusted.items()):
        return {best}, set()
    return set(), {best, *(r for r, p in adjusted.items() if p >= ALPHA or means[r] <= means[best])}


def floor_p(gaps: np.ndarray, twin_gaps: np.ndarray) -> float:
    """One-sided paired t-test p-value of "``gaps`` > ``twin_gaps``" (1.0 when undefined, 0.0 for a constant
    positive difference)."""
    x, y = _pairs(gaps, twin_gaps)
    if x.size < 2:
        return 1.0
    constant = _constant_difference(x, y)
    if constant is not None:
        return 0.0 if constant > 0.0 else 1.0
    p = float(_sps().ttest_rel(x, y, alternative="greater").pvalue)
    return p if math.isfinite(p) else 1.0


def above_floor(gaps: np.ndarray, twin_gaps: np.ndarray) -> bool:
    """True when ``gaps`` are significantly above the twin's (one-sided paired t-test at 5 %); False = "≈"."""
    return floor_p(gaps, twin_gaps) < ALPHA
