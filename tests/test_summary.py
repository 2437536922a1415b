"""clu.summary: gaps to the oracle and whole-run figures from event records, on hand-computed numbers (DESIGN §8)."""

from __future__ import annotations

import pytest

from clu.results import GAPPED, EventRecord
from clu.summary import (
    accuracy_summary,
    avg_gap_mean,
    d_avg_gap,
    final_metrics,
    request_figures,
    resurfacing,
    unlearn_time_vs_oracle,
    with_gaps,
)


def rec(step: int, kind: str, time_s: float | None = 1.0, per_task: dict | None = None, **values: float | None):
    return EventRecord(step, kind, dict(values), per_task or {}, time_s)


# ---------------------------------------------------------------------------------------------- gaps


def test_with_gaps_hand_computed():
    values = {"TA": 0.8, "RA": 0.9, "FA": 0.5, "FA_test": 0.25, "MIA": 0.3, "NA": None}
    oracle = {"TA": 0.9, "RA": 1.0, "FA": 0.0, "FA_test": 0.0, "MIA": 0.1, "NA": 0.7}
    out = with_gaps(values, oracle)
    assert out["TA_gap"] == pytest.approx(0.1)
    assert out["RA_gap"] == pytest.approx(0.1)
    assert out["FA_gap"] == pytest.approx(0.5)
    assert out["FA_test_gap"] == pytest.approx(0.25)
    assert out["MIA_gap"] == pytest.approx(0.2)
    # AvgGap averages the gaps of TA, RA, FA, MIA (DESIGN §8), not FA_test
    assert out["AvgGap"] == pytest.approx((0.1 + 0.1 + 0.5 + 0.2) / 4)
    assert {k for k in out if k.endswith("_gap")} == {f"{m}_gap" for m in GAPPED} | {"LiRA_AUC_gap", "Relearn_FA_gap"}
    assert out["LiRA_AUC_gap"] is None and out["AvgGap_L"] is None  # no LiRA on either side
    for k, v in values.items():
        assert out[k] == v  # the values themselves are untouched
    assert "NA_gap" not in out


def test_with_gaps_skips_missing_metrics():
    values = {"TA": 0.6, "RA": 0.7, "FA": None, "FA_test": None, "MIA": None}
    oracle = {"TA": 0.9, "RA": 0.9, "FA": None, "FA_test": None, "MIA": None}
    out = with_gaps(values, oracle)
    assert out["FA_gap"] is None and out["MIA_gap"] is None and out["FA_test_gap"] is None
    assert out["AvgGap"] == pytest.approx((0.3 + 0.2) / 2)
    assert with_gaps({"TA": None}, {"TA": None})["AvgGap"] is None


def test_with_gaps_of_the_oracle_against_itself_is_zero():
    v = {"TA": 0.7, "RA": 0.9, "FA": 0.0, "FA_test": 0.0, "MIA": 0.25}
    out = with_gaps(v, v)
    assert all(out[f"{m}_gap"] == 0.0 for m in GAPPED) and out["AvgGap"] == 0.0


def test_avg_gap_mean_skips_missing_and_non_finite():
    assert avg_gap_mean([0.1, None, 0.3, float("nan")]) == pytest.approx(0.2)
    assert avg_gap_mean([None]) is None and avg_gap_mean([]) is None


# ------------------------------------------------------------------------------------------- time


def test_unlearn_time_vs_oracle():
    mine = [rec(0, "learn", 5.0), rec(1, "class", 0.5), rec(2, "learn+class", 1.5)]
    oracle = [rec(0, "learn", 1.0), rec(1, "class", 2.0), rec(2, "learn+class", 2.0)]
    assert unlearn_time_vs_oracle(mine, oracle) == pytest.approx(0.5)  # (0.5 + 1.5) / (2 + 2); learn left out
    assert unlearn_time_vs_oracle(mine, []) is None  # no oracle: no ratio
    assert unlearn_time_vs_oracle(mine[:1], oracle) is None  # no unlearn event
    assert unlearn_time_vs_oracle([rec(1, "class", None)], oracle) is None  # no time recorded


# ------------------------------------------------------------------------------------ run summary


def test_accuracy_summary_aia_bwt_forgetting():
    records = [
        rec(0, "learn", TA=0.9, per_task={0: 0.9}),
        rec(1, "learn", TA=0.8, per_task={0: 0.7, 1: 0.95}),
        rec(2, "class", TA=0.7, per_task={0: 0.1, 1: 0.1}),  # not a learn event: not in AIA, not a matrix row
        rec(3, "learn+class", TA=0.75, per_task={0: 0.6, 1: 0.8, 2: 1.0}),
    ]
    out = accuracy_summary(records)
    assert out["AIA"] == pytest.approx((0.9 + 0.8 + 0.75) / 3)
    # rows: [0.9, -, -], [0.7, 0.95, -], [0.6, 0.8, 1.0]; task 2 was learned in the last row
    assert out["BWT"] == pytest.approx(((0.6 - 0.9) + (0.8 - 0.95)) / 2)
    assert out["Forgetting"] == pytest.approx(((0.9 - 0.6) + (0.95 - 0.8)) / 2)


def test_accuracy_summary_skips_a_task_forgotten_entirely():
    records = [rec(0, "learn", TA=1.0, per_task={0: 1.0}), rec(1, "learn", TA=0.5, per_task={0: 0.8, 1: 0.9}),
               rec(2, "learn", TA=0.4, per_task={0: 0.6, 2: 0.7})]  # task 1 gone by the last row
    out = accuracy_summary(records)
    assert out["AIA"] == pytest.approx(1.9 / 3)
    assert out["BWT"] == pytest.approx(0.6 - 1.0)
    assert out["Forgetting"] == pytest.approx(1.0 - 0.6)


def test_accuracy_summary_of_a_single_task_has_no_bwt():
    out = accuracy_summary([rec(0, "learn", TA=0.8, per_task={0: 0.8})])
    assert out["AIA"] == pytest.approx(0.8)
    assert out["BWT"] is None and out["Forgetting"] is None


def test_final_metrics():
    oracle = [rec(0, "learn", 2.0, TA=0.9, AvgGap=0.0), rec(1, "class", 4.0, TA=0.9, AvgGap=0.0)]
    mine = [rec(0, "learn", 1.0, {0: 0.8}, TA=0.8, AvgGap=0.1), rec(1, "class", 1.0, {0: 0.8}, TA=0.8, AvgGap=0.3)]
    out = final_metrics(mine, oracle)
    assert list(out) == ["AvgGap_mean", "AIA", "BWT", "Forgetting", "unlearn_time_vs_oracle", "time_s"]
    assert out["AvgGap_mean"] == pytest.approx(0.2) and out["AIA"] == pytest.approx(0.8)
    assert out["unlearn_time_vs_oracle"] == 0.25 and out["time_s"] == 2.0
    empty = final_metrics([])
    assert empty["AvgGap_mean"] is None and empty["AIA"] is None and empty["time_s"] == 0


# ------------------------------------------------------------------------------- LiRA gap, AvgGap_L


def test_with_gaps_lira_gap_and_avg_gap_l():
    values = {"TA": 0.8, "RA": 0.9, "FA": 0.5, "MIA": 0.3, "LiRA_AUC": 0.62}
    oracle = {"TA": 0.9, "RA": 1.0, "FA": 0.0, "MIA": 0.1, "LiRA_AUC": 0.5}
    out = with_gaps(values, oracle)
    assert out["LiRA_AUC_gap"] == pytest.approx(0.12)
    assert out["AvgGap"] == pytest.approx((0.1 + 0.1 + 0.5 + 0.2) / 4)  # unchanged: SFR-on's AvgGap
    assert out["AvgGap_L"] == pytest.approx((0.1 + 0.1 + 0.5 + 0.12) / 4)
    one_sided = with_gaps(values, {**oracle, "LiRA_AUC": None})
    assert one_sided["LiRA_AUC_gap"] is None and one_sided["AvgGap_L"] is None


# ------------------------------------------------------------------------------ request-only figures


def _stream():
    return [
        rec(0, "learn", AvgGap=0.10, AvgGap_L=0.20),
        rec(1, "learn", AvgGap=0.30, AvgGap_L=0.30),
        rec(2, "class", AvgGap=0.50, AvgGap_L=0.10),
        rec(3, "learn", AvgGap=0.20, AvgGap_L=None),
        rec(4, "learn+random_sample", AvgGap=0.10, AvgGap_L=0.40),
    ]


def test_d_avg_gap_is_the_requests_own_effect():
    d = d_avg_gap(_stream())
    assert set(d) == {2, 4}
    assert d[2] == pytest.approx(0.50 - 0.30)
    assert d[4] == pytest.approx(0.10 - 0.20)
    assert d_avg_gap([rec(0, "class", AvgGap=0.1)]) == {0: None}  # no event before it
    assert d_avg_gap([rec(0, "learn", AvgGap=None), rec(1, "class", AvgGap=0.1)]) == {1: None}


def test_request_figures_hand_computed():
    out = request_figures(_stream())
    assert out["AvgGap_req"] == pytest.approx((0.50 + 0.10) / 2)
    assert out["AvgGap_L_mean"] == pytest.approx((0.20 + 0.30 + 0.10 + 0.40) / 4)
    assert out["AvgGap_L_req"] == pytest.approx((0.10 + 0.40) / 2)
    assert out["dAvgGap_mean"] == pytest.approx((0.20 - 0.10) / 2)
    learn_only = request_figures([rec(0, "learn", AvgGap=0.1)])
    assert learn_only == {"AvgGap_req": None, "AvgGap_L_mean": None, "AvgGap_L_req": None, "dAvgGap_mean": None,
                          "FA_resurface_max": None}


def test_relearn_gap_is_not_part_of_the_averages():
    values = {"TA": 0.8, "RA": 0.9, "FA": 0.5, "MIA": 0.3, "Relearn_FA": 0.75}
    oracle = {"TA": 0.9, "RA": 1.0, "FA": 0.0, "MIA": 0.1, "Relearn_FA": 0.25}
    out = with_gaps(values, oracle)
    assert out["Relearn_FA_gap"] == pytest.approx(0.5)
    assert out["AvgGap"] == pytest.approx((0.1 + 0.1 + 0.5 + 0.2) / 4)
    assert with_gaps(values, {**oracle, "Relearn_FA": None})["Relearn_FA_gap"] is None


# ---------------------------------------------------------------------------------------- resurfacing


def _fa(step: int, kind: str, **per_request: float | None) -> EventRecord:
    return EventRecord(step, kind, {}, {}, 1.0, per_request={int(k[1:]): v for k, v in per_request.items()})


def test_resurfacing_is_a_requests_highest_later_fa_and_where():
    records = [
        _fa(0, "learn"),
        _fa(1, "class", r0=0.05),
        _fa(2, "learn", r0=0.30),
        _fa(3, "random_sample", r0=0.10, r1=0.50),
        _fa(4, "learn", r0=0.30, r1=0.70),
        _fa(5, "learn+class", r0=None, r1=0.60, r2=0.0),  # request 0's samples learned again: no FA
    ]
    out = resurfacing(records)
    assert set(out) == {1, 3, 5}
    assert out[1] == (pytest.approx(0.30), 2)  # the first event reaching the highest value
    assert out[3] == (pytest.approx(0.70), 4)
    assert out[5] == (None, None)  # the last event: nothing later
    figures = request_figures([EventRecord(r.step, r.kind, {"FA_resurface": out.get(r.step, (None,))[0]}, {}, 1.0)
                               for r in records])
    assert figures["FA_resurface_max"] == pytest.approx(0.70)
