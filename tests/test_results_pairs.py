"""results/pairs.py: the attached-vs-detached table compares each request at the same point of the stream."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from clu.records import ResultRow
from clu.results import TWIN

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("results_pairs", ROOT / "results" / "pairs.py")
assert _spec is not None and _spec.loader is not None
pairs = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = pairs
_spec.loader.exec_module(pairs)

ATT = [(0, "learn"), (1, "learn+class"), (2, "learn+random_sample")]
DET = [(0, "learn"), (1, "class"), (2, "learn"), (3, "random_sample"), (4, "learn")]


def rows(events, values: dict[tuple[str, int], tuple[float, float]]) -> list[ResultRow]:
    """ResultRows for two seeds: values[(strategy, step)] = (AvgGap, TA_gap) of seed 0; seed 1 adds 0.02."""
    out = []
    for (strategy, step), (avg, ta) in values.items():
        kind = dict(events)[step]
        for seed in (0, 1):
            out.append(ResultRow("sc", strategy, seed, 1, step, kind, "AvgGap", avg + 0.02 * seed))
            out.append(ResultRow("sc", strategy, seed, 1, step, kind, "TA_gap", -(ta + 0.02 * seed)))
    return out


def test_requests_are_matched_to_the_learn_event_after_the_detached_request() -> None:
    a = rows(ATT, {("m", 1): (0.1, 0.0), ("m", 2): (0.1, 0.0)})
    d = rows(DET, {("m", 1): (0.1, 0.0), ("m", 3): (0.1, 0.0)} | {("m", s): (0.1, 0.0) for s in (2, 4)})
    assert pairs.matched_requests(a, d) == [pairs.Matched("class", 1, 2), pairs.Matched("random_sample", 2, 4)]


def test_streams_with_other_requests_are_refused() -> None:
    a = rows(ATT, {("m", 1): (0.1, 0.0), ("m", 2): (0.1, 0.0)})
    d = rows([(0, "learn"), (1, "random_sample"), (2, "learn"), (3, "class"), (4, "learn")],
             {("m", s): (0.1, 0.0) for s in range(5)})
    with pytest.raises(ValueError, match="different requests"):
        pairs.matched_requests(a, d)


def test_rows_hold_the_hand_computed_gaps_floor_and_verdicts() -> None:
    a = rows(ATT, {("m", 1): (0.10, 0.02), ("m", 2): (0.06, 0.20), (TWIN, 1): (0.03, 0.0), (TWIN, 2): (0.05, 0.0),
                   ("b", 1): (0.05, 0.01), ("b", 2): (0.05, 0.10)})
    d = rows(DET, {("m", 1): (0.5, 0.5), ("m", 2): (0.05, 0.01), ("m", 3): (0.5, 0.5), ("m", 4): (0.05, 0.01)})
    out = pairs.pair_rows("sc", a, d, ["m"], ["b"])
    first, second, mean = out
    # request 1: attached 10 / 12 points, detached 5 / 7: difference 5 exactly, above the twin's 4 (3 / 5)
    assert first[:7] == ["sc", "1: class", "m", "11.00 ± 12.71", "6.00 ± 12.71", "5.00 ± 0.00", "4.00"]
    assert first[7] == "worse by 1.00" and first[10] == "2.00 (b)"
    # request 2: difference 1 point, twin 6: within; TA gap 21 vs the baseline's 11: more than 5 points above
    assert second[5] == "1.00 ± 0.00" and second[7] == "within floor; TA collapses"
    assert mean[1] == "mean" and mean[5] == "3.00 ± 0.00" and mean[6] == "5.00" and mean[7] == "within floor"
