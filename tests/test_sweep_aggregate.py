"""clu.sweeps.aggregate's statistics: aggregate.csv over seeds (replicas averaged first) and stats.csv."""

from __future__ import annotations

import csv
import io

import pytest

from clu.report import STATS_HEADER, stats_rows
from clu.results import ALL, FINAL, ORACLE, TWIN, ResultRow
from clu.sweeps.aggregate import aggregate_rows, stats_csv


def test_aggregate_rows_average_replicas_within_a_seed_then_seeds() -> None:
    rows = [ResultRow("sc", "er", 0, k, 2, "class", "TA", v) for k, v in ((1, 0.4), (2, 0.6))]  # seed 0: 0.5
    rows += [ResultRow("sc", "er", 1, 1, 2, "class", "TA", 0.7), ResultRow("sc", "er", 1, 2, 2, "class", "TA", None)]
    rows += [ResultRow("sc", "er", 2, 1, 2, "class", "TA", 0.9)]
    rows += [ResultRow("sc", "er", s, ALL, 2, "class", "KLoM", v) for s, v in ((0, 0.1), (1, 0.3))]
    rows += [ResultRow("sc", "er", 0, 1, FINAL, "run", "BWT", -0.1)]
    agg = {(r.metric): r for r in aggregate_rows(rows)}
    ta = agg["TA"]
    assert (ta.scenario, ta.strategy, ta.step, ta.kind, ta.n) == ("sc", "er", 2, "class", 3)  # n counts seeds
    assert ta.mean == pytest.approx(0.7) and ta.std == pytest.approx(0.2)  # seeds 0.5, 0.7, 0.9
    assert ta.ci95 == pytest.approx(4.302653 * 0.2 / 3**0.5, rel=1e-6)  # t(0.975, 2) * s / sqrt(n)
    assert (agg["KLoM"].mean, agg["KLoM"].n) == (pytest.approx(0.2), 2)
    assert (agg["BWT"].mean, agg["BWT"].std, agg["BWT"].ci95, agg["BWT"].n) == (-0.1, None, None, 1)


def test_aggregate_rows_of_one_replica_keep_the_exact_mean() -> None:
    vals = [0.1, 0.2, 0.7]
    rows = [ResultRow("sc", "er", s, 1, 0, "learn", "TA", v) for s, v in enumerate(vals)]
    (row,) = aggregate_rows(rows)
    assert row.mean == sum(vals) / 3 and row.n == 3  # same float as the mean over seeds (R = 1 unchanged)


def test_stats_csv_writes_the_p_values() -> None:
    rows = []
    for label, base in ((ORACLE, 0.0), (TWIN, 0.04), ("a", 0.01), ("b", 0.2)):
        for s in range(3):
            rows.append(ResultRow("sc", label, s, 1, FINAL, "run", "AvgGap_req", base + 0.001 * s * (1 + base)))
    text = stats_csv(["sc"], [ORACLE, TWIN, "a", "b"], [0, 1, 2], rows)
    got = list(csv.reader(io.StringIO(text)))
    assert tuple(got[0]) == STATS_HEADER
    want = stats_rows(["sc"], [ORACLE, TWIN, "a", "b"], [0, 1, 2], rows)
    assert len(got) - 1 == len(want) > 0
    req = [r for r in got[1:] if r[1] == "AvgGap_req"]
    assert {(r[2], r[3]) for r in req} == {("a", "b"), ("b", "a"), ("a", TWIN), ("b", TWIN)}
    assert all(r[6] == "" for r in req)  # 3 seeds: no Wilcoxon
    assert float(next(r for r in req if r[2] == "a" and r[3] == "b")[4]) < 0.05
