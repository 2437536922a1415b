"""clu.stats on hand-computed cases: CI, paired tests, Holm, leaders, the floor mark (DESIGN §8, §13)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from clu.stats import above_floor, ci95, compare, holm, leaders, paired_p, wilcoxon_p

NAN = float("nan")


def test_ci95_hand_computed() -> None:
    # values 1, 2, 3: mean 2, s = 1, t(0.975, 2) = 4.302653 -> half-width 4.302653 / sqrt(3) = 2.484138
    assert ci95([1.0, 2.0, 3.0]) == pytest.approx(2.4841377, abs=1e-6)
    assert ci95([1.0, None, 2.0, NAN, 3.0]) == pytest.approx(2.4841377, abs=1e-6)  # missing values skipped
    assert ci95([5.0]) is None and ci95([]) is None
    assert ci95([2.0, 2.0, 2.0]) == 0.0


def test_paired_p_hand_computed() -> None:
    # differences 1, 2, 3: mean 2, s = 1, t = 2 / (1/sqrt 3) = 3.4641, df 2 -> two-sided p = 0.074180
    a = np.array([2.0, 4.0, 6.0])
    b = np.array([1.0, 2.0, 3.0])
    assert paired_p(a, b) == pytest.approx(0.0741799, abs=1e-6)
    assert paired_p(b, a) == pytest.approx(0.0741799, abs=1e-6)


def test_paired_p_is_nan_safe() -> None:
    assert paired_p(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])) == 1.0  # identical: no evidence
    assert paired_p(np.array([1.0]), np.array([0.0])) == 1.0  # one pair
    # a NaN on either side drops the pair: same as the test on the other three pairs
    a = np.array([2.0, 4.0, NAN, 6.0])
    b = np.array([1.0, 2.0, 0.0, 3.0])
    assert paired_p(a, b) == pytest.approx(0.0741799, abs=1e-6)
    with pytest.raises(ValueError, match="aligned"):
        paired_p(np.zeros(3), np.zeros(4))


def test_wilcoxon_only_from_ten_pairs() -> None:
    a = np.arange(9, dtype=float)
    assert wilcoxon_p(a + 1, a) is None
    a = np.arange(10, dtype=float)
    # all 10 differences positive: exact two-sided p = 2 / 2**10
    assert wilcoxon_p(a + 1, a) == pytest.approx(2 / 1024)
    assert wilcoxon_p(a, a) == 1.0


def test_holm_hand_computed() -> None:
    # sorted 0.01 (x3) = 0.03, 0.03 (x2) = 0.06, 0.04 (x1) = 0.04 -> monotone: 0.06
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})
    assert holm({"a": 0.5, "b": 0.6}) == pytest.approx({"a": 1.0, "b": 1.0})  # capped at 1
    assert holm({"only": 0.02}) == {"only": 0.02}
    assert holm({}) == {}


def test_leaders_bold_when_the_best_beats_every_rival() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 10)
    per_seed = {"good": base + 0.0, "mid": base + 1.0 + rng.normal(0, 0.05, 10), "bad": base + 2.0}
    assert leaders(per_seed, "min") == ({"good"}, set())
    assert leaders(per_seed, "max") == ({"bad"}, set())
    near = {lab: centre + rng.normal(0, 0.01, 10) for lab, centre in (("on", 2.0), ("off", 2.5), ("far", 1.0))}
    assert leaders(near, ("target", 2.0)) == ({"on"}, set())  # closest to the target, either side


def test_leaders_tied_when_the_best_is_not_significantly_better() -> None:
    per_seed = {
        "a": np.array([1.0, 2.0, 3.0, 4.0]),
        "b": np.array([1.1, 1.9, 3.2, 3.9]),  # mean 2.525: within the noise of a
        "c": np.array([5.0, 6.1, 7.0, 8.2]),  # clearly worse
    }
    bold, tied = leaders(per_seed, "min")
    assert bold == set() and tied == {"a", "b"}


def test_leaders_need_two_methods_with_values() -> None:
    assert leaders({"a": np.array([1.0, 2.0])}, "min") == (set(), set())
    assert leaders({"a": np.array([1.0, 2.0]), "b": np.array([NAN, NAN])}, "min") == (set(), set())
    with pytest.raises(ValueError, match="rule"):
        leaders({"a": np.ones(2), "b": np.zeros(2)}, "best")  # type: ignore[arg-type]


def test_compare_is_holm_corrected_over_each_methods_rivals() -> None:
    per_seed = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([2.0, 4.0, 6.0]), "c": np.array([1.0, 2.0, 3.5])}
    rows = {(c.method, c.rival): c for c in compare(per_seed)}
    assert set(rows) == {(m, r) for m in per_seed for r in per_seed if m != r}
    raw = {r: paired_p(per_seed["a"], per_seed[r]) for r in ("b", "c")}
    adjusted = holm(raw)
    for r in ("b", "c"):
        assert rows[("a", r)].t_p == raw[r] and rows[("a", r)].holm_p == adjusted[r]
        assert rows[("a", r)].wilcoxon_p is None
    assert rows[("a", "b")].t_p == pytest.approx(0.0741799, abs=1e-6)


def test_above_floor_is_one_sided() -> None:
    twin = np.array([0.04, 0.05, 0.03, 0.045, 0.05])
    assert above_floor(twin + np.array([0.1, 0.12, 0.09, 0.11, 0.1]), twin)  # clearly above
    assert not above_floor(twin - 0.02, twin)  # below the floor is "≈", not "above"
    assert not above_floor(twin, twin)
    assert not above_floor(np.array([0.5]), np.array([0.0]))  # one seed: cannot tell
    # hand-computed: differences 1, 2, 3 -> one-sided p = 0.0741799 / 2 = 0.037 < 0.05
    assert above_floor(np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0]))
    # differences 1, 2, 6: t = 3 / (2.6458 / sqrt 3) = 1.964, one-sided p = 0.094 -> not above
    d = np.array([1.0, 2.0, 6.0])
    assert sps.ttest_rel(d, np.zeros(3), alternative="greater").pvalue == pytest.approx(0.0942, abs=1e-3)
    assert not above_floor(d, np.zeros(3))
    one_sided = sps.ttest_rel([2.0, 4, 6], [1.0, 2, 3], alternative="greater").pvalue
    assert math.isclose(0.0741799 / 2, one_sided, abs_tol=1e-6)


def test_wilcoxon_equals_scipy_with_ties_and_zeros_without_its_permutation_test() -> None:
    import scipy.stats as sps

    rng = np.random.default_rng(0)
    for trial in range(12):  # scipy takes ~0.4 s a call on these
        n = int(rng.integers(10, 14))
        x, y = np.round(rng.normal(size=n), 1), np.round(rng.normal(size=n), 1)
        if trial % 3 == 0:
            y[:3] = x[:3]  # zero differences
        assert wilcoxon_p(x, y) == pytest.approx(float(sps.wilcoxon(x, y).pvalue), abs=1e-12)
