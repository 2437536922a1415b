"""Unit tests for clu.metrics on hand-made numbers (DESIGN §8)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clu.metrics import (
    GAP_METRICS,
    GAP_METRICS_L,
    accuracy,
    average_incremental_accuracy,
    avg_gap,
    bwt,
    class_balanced_indices,
    forgetting,
    gap,
    kl_divergence,
    klom,
    klom_summary,
)

NAN = float("nan")


# --- accuracy ---------------------------------------------------------------------------------


def test_accuracy_hand_computed() -> None:
    # pred [0,1,2,2] vs y [0,1,1,2]: positions 0,1,3 match, 2 does not -> 3/4 = 0.75
    assert accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])) == pytest.approx(0.75)


def test_accuracy_empty_is_none() -> None:
    assert accuracy(np.array([], dtype=int), np.array([], dtype=int)) is None


def test_accuracy_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        accuracy(np.array([0, 1]), np.array([0]))


# --- KL ---------------------------------------------------------------------------------------


def test_kl_hand_computed() -> None:
    # row 0: p=[.5,.5], q=[.25,.75]
    #   KL = .5*ln(.5/.25) + .5*ln(.5/.75) = .5*ln 2 + .5*ln(2/3) = .5*ln(4/3) = 0.143841...
    # row 1: p = q -> 0
    # mean = .25*ln(4/3) = 0.0719205...
    p = np.array([[0.5, 0.5], [0.2, 0.8]])
    q = np.array([[0.25, 0.75], [0.2, 0.8]])
    assert kl_divergence(p, q) == pytest.approx(0.25 * math.log(4 / 3))
    assert kl_divergence(p, q) == pytest.approx(0.0719205, abs=1e-7)


def test_kl_zero_reference_entries_contribute_nothing() -> None:
    # p=[1,0], q=[.5,.5]: KL = 1*ln(1/.5) + 0 = ln 2 = 0.693147...
    assert kl_divergence(np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]])) == pytest.approx(math.log(2))


def test_kl_is_asymmetric_and_clipped() -> None:
    # KL([.5,.5] || [1,0]) = .5*ln(.5/1) + .5*ln(.5/eps) : large but finite thanks to the clip
    v = kl_divergence(np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]]), eps=1e-12)
    assert v is not None and math.isfinite(v)
    assert v == pytest.approx(0.5 * math.log(0.5) + 0.5 * math.log(0.5 / 1e-12))


def test_kl_single_row_1d_and_empty() -> None:
    assert kl_divergence(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(0.5 * math.log(4 / 3))
    assert kl_divergence(np.empty((0, 3)), np.empty((0, 3))) is None


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 20), st.integers(2, 8), st.integers(0, 2**31 - 1))
def test_kl_nonnegative_and_zero_on_self(n: int, c: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(c), size=n)
    q = rng.dirichlet(np.ones(c), size=n)
    assert kl_divergence(p, q) >= -1e-12  # type: ignore[operator]
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)


# --- gaps -------------------------------------------------------------------------------------


def test_gap() -> None:
    # |0.7 - 0.9| = 0.2 ; |0.9 - 0.7| = 0.2
    assert gap(0.7, 0.9) == pytest.approx(0.2)
    assert gap(0.9, 0.7) == pytest.approx(0.2)
    assert gap(None, 0.5) is None
    assert gap(0.5, None) is None
    assert gap(NAN, 0.5) is None


def test_avg_gap_skips_none() -> None:
    assert GAP_METRICS == ("TA", "RA", "FA", "MIA")
    # (0.01 + 0.0 + 0.2) / 3 = 0.21 / 3 = 0.07  (FA is None -> skipped)
    assert avg_gap({"TA": 0.01, "RA": 0.0, "FA": None, "MIA": 0.2}) == pytest.approx(0.07)
    # all four: (0.1 + 0.2 + 0.3 + 0.4) / 4 = 0.25
    assert avg_gap({"TA": 0.1, "RA": 0.2, "FA": 0.3, "MIA": 0.4}) == pytest.approx(0.25)


def test_avg_gap_ignores_other_keys_and_all_none() -> None:
    # FA_test is not one of GAP_METRICS; only TA counts -> 0.3
    assert avg_gap({"TA": 0.3, "FA_test": 0.9}) == pytest.approx(0.3)
    assert avg_gap({"TA": None, "RA": None, "FA": None, "MIA": None}) is None
    assert avg_gap({}) is None


# --- average incremental accuracy -------------------------------------------------------------


def test_average_incremental_accuracy() -> None:
    # (0.9 + 0.8 + 0.7) / 3 = 2.4 / 3 = 0.8
    assert average_incremental_accuracy([0.9, 0.8, 0.7]) == pytest.approx(0.8)
    assert average_incremental_accuracy([]) is None


# --- BWT and forgetting ------------------------------------------------------------------------


def test_bwt_forgetting_3x3() -> None:
    # rows = after learn event 0, 1, 2; columns = task 0, 1, 2
    acc = np.array(
        [
            [0.8, NAN, NAN],
            [0.9, 0.7, NAN],
            [0.6, 0.75, 0.95],
        ]
    )
    # BWT: task 0 learned in row 0: 0.6 - 0.8 = -0.2 ; task 1 learned in row 1: 0.75 - 0.7 = +0.05
    #      mean = (-0.2 + 0.05) / 2 = -0.075        (task 2 is the last one: excluded)
    assert bwt(acc) == pytest.approx(-0.075)
    # forgetting: task 0: max(0.8, 0.9) - 0.6 = 0.3 ; task 1: max(0.7) - 0.75 = -0.05
    #      mean = (0.3 - 0.05) / 2 = 0.125
    assert forgetting(acc) == pytest.approx(0.125)


def test_bwt_forgetting_monotone_decay() -> None:
    acc = np.array(
        [
            [0.9, NAN, NAN],
            [0.7, 0.8, NAN],
            [0.6, 0.7, 0.95],
        ]
    )
    # BWT = ((0.6-0.9) + (0.7-0.8)) / 2 = (-0.3 - 0.1) / 2 = -0.2
    # forgetting = ((0.9-0.6) + (0.8-0.7)) / 2 = (0.3 + 0.1) / 2 = 0.2
    assert bwt(acc) == pytest.approx(-0.2)
    assert forgetting(acc) == pytest.approx(0.2)


def test_bwt_skips_forgotten_task() -> None:
    # task 1 was forgotten (NaN in the last row) -> only task 0 counts
    acc = np.array(
        [
            [0.9, NAN, NAN],
            [0.8, 0.7, NAN],
            [0.5, NAN, 0.9],
        ]
    )
    # BWT = 0.5 - 0.9 = -0.4 ; forgetting = max(0.9, 0.8) - 0.5 = 0.4
    assert bwt(acc) == pytest.approx(-0.4)
    assert forgetting(acc) == pytest.approx(0.4)


def test_bwt_first_non_nan_row_is_learned_row() -> None:
    # task 1 (column 1) learned in row 0, task 0 (column 0) in row 1: columns need not follow rows
    acc = np.array(
        [
            [NAN, 0.8],
            [0.9, 0.6],
        ]
    )
    # only column 1 is learned before the last row: BWT = 0.6 - 0.8 = -0.2, forgetting = 0.8 - 0.6 = 0.2
    assert bwt(acc) == pytest.approx(-0.2)
    assert forgetting(acc) == pytest.approx(0.2)


def test_bwt_forgetting_none_with_fewer_than_two_tasks() -> None:
    assert bwt(np.array([[0.9]])) is None
    assert forgetting(np.array([[0.9]])) is None
    assert bwt(np.array([[0.9], [0.8]])) is None  # one task, two rows
    assert bwt(np.empty((0, 0))) is None
    # two tasks but everything learned so far got forgotten
    assert bwt(np.array([[0.9, NAN], [NAN, 0.8]])) is None
    assert forgetting(np.array([[0.9, NAN], [NAN, 0.8]])) is None


# --- class balancing --------------------------------------------------------------------------


def test_class_balanced_indices_hand_made() -> None:
    y_a = np.array([0, 0, 0, 1, 2, 2])
    y_b = np.array([0, 1, 1, 1, 3])
    # shared classes: 0 (3 in a, 1 in b -> 1 each) and 1 (1 in a, 3 in b -> 1 each); 2 and 3 dropped
    ia, ib = class_balanced_indices(y_a, y_b, np.random.default_rng(0))
    assert ia.size == 2 and ib.size == 2
    assert np.all(np.diff(ia) > 0) and np.all(np.diff(ib) > 0)  # sorted, unique
    assert sorted(y_a[ia].tolist()) == [0, 1]
    assert sorted(y_b[ib].tolist()) == [0, 1]
    assert 3 in ia and 0 in ib  # the only class-1 sample of a, the only class-0 sample of b


def test_class_balanced_indices_deterministic_and_disjoint_classes() -> None:
    y_a = np.repeat([0, 1, 2], [10, 5, 7])
    y_b = np.repeat([0, 1, 2], [4, 9, 7])
    r1 = class_balanced_indices(y_a, y_b, np.random.default_rng(42))
    r2 = class_balanced_indices(y_a, y_b, np.random.default_rng(42))
    assert np.array_equal(r1[0], r2[0]) and np.array_equal(r1[1], r2[1])
    # per class: min(10,4)=4, min(5,9)=5, min(7,7)=7 -> 16 each
    assert r1[0].size == r1[1].size == 16
    ia, ib = class_balanced_indices(np.array([0, 0]), np.array([1, 1]), np.random.default_rng(0))
    assert ia.size == 0 and ib.size == 0 and ia.dtype == np.int64


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 4), max_size=40),
    st.lists(st.integers(0, 4), max_size=40),
    st.integers(0, 2**31 - 1),
)
def test_class_balanced_indices_counts_match(a: list[int], b: list[int], seed: int) -> None:
    y_a, y_b = np.array(a, dtype=int), np.array(b, dtype=int)
    ia, ib = class_balanced_indices(y_a, y_b, np.random.default_rng(seed))
    assert np.unique(ia).size == ia.size and np.unique(ib).size == ib.size
    for c in range(5):
        expect = min(int(np.sum(y_a == c)), int(np.sum(y_b == c)))
        assert int(np.sum(y_a[ia] == c)) == expect
        assert int(np.sum(y_b[ib] == c)) == expect


# --- AvgGap_L, KLoM -------------------------------------------------------------------------


def test_avg_gap_l_uses_lira_in_place_of_mia() -> None:
    gaps = {"TA": 0.1, "RA": 0.2, "FA": 0.3, "MIA": 0.9, "LiRA_AUC": 0.2}
    assert avg_gap(gaps) == pytest.approx((0.1 + 0.2 + 0.3 + 0.9) / 4)
    assert avg_gap(gaps, GAP_METRICS_L) == pytest.approx((0.1 + 0.2 + 0.3 + 0.2) / 4)


def test_klom_hand_made_histograms() -> None:
    # sample 0: oracle {0, 0, 1, 1}, method {0, 0, 0, 1}; 2 bins over [0, 1] -> p = (1/2, 1/2), q = (3/4, 1/4)
    # sample 1: identical sets -> 0
    oracle = np.array([[0.0, 5.0], [0.0, 6.0], [1.0, 5.0], [1.0, 6.0]])
    method = np.array([[0.0, 5.0], [0.0, 6.0], [0.0, 5.0], [1.0, 6.0]])
    want = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert klom(oracle, method, bins=2) == pytest.approx([want, 0.0])
    assert want == pytest.approx(0.143841, abs=1e-6)


def test_klom_empty_bins_get_eps_and_are_renormalised() -> None:
    # oracle all in bin 0, method all in bin 1 (2 bins over [0, 1]): p = (1, e)/(1+e), q = (e, 1)/(1+e)
    e = 1e-6
    p = np.array([1.0, e]) / (1 + e)
    q = np.array([e, 1.0]) / (1 + e)
    want = float(np.sum(p * np.log(p / q)))
    got = klom(np.array([[0.0], [0.0], [0.0]]), np.array([[1.0], [1.0]]), bins=2, eps=e)
    assert got == pytest.approx([want])
    assert want == pytest.approx(math.log(1 / e) * (1 - e) / (1 + e), rel=1e-9)


def test_klom_pooled_range_and_unequal_replica_counts() -> None:
    # pooled range [0, 4], 4 bins of width 1: oracle (0, 1) -> bins 0, 1; method (3, 4) -> bins 3, 3
    # (the top edge falls in the last bin)
    got = klom(np.array([[0.0], [1.0]]), np.array([[3.0], [4.0], [4.0]]), bins=4, eps=1e-6)
    e = 1e-6
    p = np.array([0.5, 0.5, e, e]); p /= p.sum()
    q = np.array([e, e, e, 1.0]); q /= q.sum()
    assert got == pytest.approx([float(np.sum(p * np.log(p / q)))])
    # a zero-width range: everything in one bin on both sides -> 0
    assert klom(np.full((3, 2), 7.0), np.full((2, 2), 7.0)) == pytest.approx([0.0, 0.0])
    with pytest.raises(ValueError, match="klom"):
        klom(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="klom"):
        klom(np.zeros((0, 3)), np.zeros((2, 3)))


def test_klom_is_nonnegative_and_zero_for_the_same_distribution() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 50))
    assert np.all(klom(x, rng.normal(2, 1, size=(16, 50))) >= 0)
    assert klom(x, x) == pytest.approx(np.zeros(50))


def test_klom_summary() -> None:
    v = np.arange(101, dtype=float)  # mean 50, 95th percentile 95
    assert klom_summary(v) == pytest.approx({"KLoM": 50.0, "KLoM_p95": 95.0})
    assert klom_summary(np.array([])) == {"KLoM": None, "KLoM_p95": None}
