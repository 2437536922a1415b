"""clu.results: the run-folder schema — write_run/read_run round trip, the sweep files, bad files, the folder."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from clu.config import ConfigError
from clu.checkpoints import checkpoint_path
from clu.margins import EventMargins
from clu.results import (
    AGGREGATE_HEADER,
    ALL,
    FINAL,
    FINAL_CSV_METRICS,
    KLOM_METRICS,
    METRICS_HEADER,
    RESULTS_HEADER,
    SUMMARY_EVENT_KEYS,
    TIMINGS_HEADER,
    TWIN,
    AggregateRow,
    EventRecord,
    ResultRow,
    Unit,
    UnitSpec,
    aggregate_csv,
    check_out,
    format_value,
    margins_path,
    read_aggregate,
    read_results,
    read_run,
    read_units,
    results_csv,
    safe_label,
    write_margins,
    write_run,
    write_units_manifest,
)

ORACLE_SPEC = UnitSpec("retrain", "retrain", 1, 3, 3, "oracle")


def _results() -> list[Unit]:
    oracle = Unit(ORACLE_SPEC, [
        EventRecord(0, "learn", {"TA": 0.9, "RA": 1.0, "AvgGap": 0.0}, {0: 0.9}, 1.25),
        EventRecord(1, "class", {"TA": 0.1 + 0.2, "FA": 0.0, "KL": float("nan")}, {0: 1 / 3, 1: None}, 0.5),
    ], final={"AvgGap_mean": 0.0, "AIA": 0.9, "BWT": None, "Forgetting": None, "unlearn_time_vs_oracle": 1.0,
              "time_s": 1.75})
    stopped = Unit(UnitSpec("er-lr", "er", 1, 3, 3, "strategy"), [], error="stopped at step 0 (learn): diverged",
                   final={"time_s": 0})
    return [oracle, stopped]


def _rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))


def test_write_run_files(tmp_path: Path) -> None:
    summary = write_run(tmp_path, "sc", 3, _results())
    rows = _rows(tmp_path / "metrics.csv")
    assert tuple(rows[0]) == METRICS_HEADER
    assert {r[2] for r in rows[1:]} == {"1"}  # the replica column
    step0 = [r for r in rows[1:] if r[3] == "0"]
    # every per-event metric in its fixed order (empty where it does not apply), then the per-task accuracies
    assert [r[5] for r in step0] == [*SUMMARY_EVENT_KEYS, "acc_task_0"]
    assert {r[5]: r[6] for r in step0}["TA"] == "0.9" and {r[5]: r[6] for r in step0}["FA"] == ""
    step1 = {r[5]: r[6] for r in rows[1:] if r[3] == "1"}
    assert step1["TA"] == repr(0.1 + 0.2) and step1["KL"] == "" and step1["acc_task_1"] == ""  # exact repr; NaN empty
    final = [r[5:] for r in rows[1:] if r[3] == FINAL]
    assert [m for m, _ in final] == list(FINAL_CSV_METRICS)
    assert final[:4] == [["AvgGap_mean", "0.0"], ["AIA", "0.9"], ["BWT", ""], ["Forgetting", ""]]
    assert not any(r[0] == "er-lr" for r in rows)  # no records, no rows
    assert _rows(tmp_path / "timings.csv") == [list(TIMINGS_HEADER), ["retrain", "3", "1", "0", "learn", "1.25"],
                                               ["retrain", "3", "1", "1", "class", "0.5"]]
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    entry = summary["strategies"]["retrain"]
    assert entry["time_s"] == 1.75 and entry["final"]["TA"] == pytest.approx(0.3)  # the last event's values
    assert entry["final"]["unlearn_time_vs_oracle"] == 1.0 and entry["per_event"][1]["KL"] is None
    assert summary["strategies"]["er-lr"]["error"].startswith("stopped")
    assert entry["replicas"] == 1 and "per_replica" not in entry


def _replica(k: int, ta: float, label: str = "er") -> Unit:
    spec = UnitSpec(label, "er", k, k, k, "strategy")
    return Unit(spec, [EventRecord(0, "learn", {"TA": ta}, {0: ta}, 1.0),
                       EventRecord(1, "class", {"TA": ta / 2, "FA": None}, {0: ta / 2}, 2.0)],
                final={"AvgGap_mean": ta, "time_s": 3.0})


def test_write_run_with_replicas_and_cross_replica_rows(tmp_path: Path) -> None:
    cross = Unit(UnitSpec("er", "er", ALL, 0, 0, "strategy"),
                 [EventRecord(1, "class", {"KLoM": 0.25, "KLoM_p95": 0.5}, {}, None)])
    summary = write_run(tmp_path, "sc", 0, [_replica(1, 0.5), _replica(2, 0.7), cross])
    rows = _rows(tmp_path / "metrics.csv")[1:]
    assert [r[2] for r in rows].index("2") > [r[2] for r in rows].index("1")  # replicas ascending, then "all"
    assert [r[2:] for r in rows if r[2] == ALL] == [["all", "1", "class", m, v] for m, v in
                                                    zip(KLOM_METRICS, ("0.25", "0.5"))]
    assert all(r[2] != ALL for r in _rows(tmp_path / "timings.csv")[1:])
    entry = summary["strategies"]["er"]
    assert entry["replicas"] == 2 and [p["replica"] for p in entry["per_replica"]] == [1, 2]
    assert entry["per_replica"][1]["final"]["TA"] == 0.35
    assert entry["per_event"][0]["TA"] == pytest.approx(0.6) and entry["final"]["AvgGap_mean"] == pytest.approx(0.6)
    assert entry["per_event"][1]["KLoM"] == 0.25 and entry["final"]["KLoM_p95"] == 0.5
    assert entry["per_event"][1]["FA"] is None
    run = read_run(tmp_path)
    assert [(s.label, s.replica) for s in run.strategies] == [("er", 1), ("er", 2), ("er", ALL)]


def test_safe_label_and_unit_paths(tmp_path: Path) -> None:
    assert safe_label(TWIN) == "retrain-twin" and safe_label("retrain (shadow 3)") == "retrain-shadow-3"
    assert safe_label("er_salun") == "er_salun" and safe_label("ugclu-v2.1") == "ugclu-v2.1"
    assert checkpoint_path(tmp_path, ORACLE_SPEC, 4) == tmp_path / "checkpoints" / "retrain" / "event-004.pt"
    twin3 = UnitSpec(TWIN, "retrain", 3, 7, 8, "twin")
    assert checkpoint_path(tmp_path, twin3, 0) == tmp_path / "checkpoints/retrain-twin/replica-3/event-000.pt"
    assert margins_path(tmp_path, twin3) == tmp_path / "margins/retrain-twin/replica-3.npz"


def test_margins_and_units_round_trip(tmp_path: Path) -> None:
    m0 = EventMargins(np.array([]), 0, np.empty((0, 3)))
    m1 = EventMargins(np.array([1.5, -2.0, 0.25]), 1, np.array([[0.2, 0.3, 0.5]]), np.array([3.0, -1.0, 0.5]))
    unit = _results()[0]
    unit.records[0].margins, unit.records[1].margins = m0, m1
    write_run(tmp_path, "sc", 3, [unit])
    write_margins(tmp_path, unit)
    write_units_manifest(tmp_path, [ORACLE_SPEC])
    [back] = read_units(tmp_path)
    assert back.spec == ORACLE_SPEC and [r.step for r in back.records] == [0, 1]
    assert "AvgGap" not in back.records[0].values  # joined values are recomputed, not read back
    got = back.records[1].margins
    assert got.n_members == 1 and np.array_equal(got.phi, m1.phi) and np.array_equal(got.before, m1.before)
    assert np.array_equal(got.probs, m1.probs) and back.records[0].margins.before is None
    assert sorted(np.load(margins_path(tmp_path, ORACLE_SPEC)).files) == [
        "before_1", "n_members_0", "n_members_1", "phi_0", "phi_1", "probs_0", "probs_1"]  # no ids
    state = EventRecord.from_state(unit.records[1].to_state())  # checkpoints keep the margins
    assert np.array_equal(state.margins.phi, m1.phi)


def test_read_run_round_trip(tmp_path: Path) -> None:
    written = _results()
    write_run(tmp_path, "sc", 3, written)
    run = read_run(tmp_path)
    assert (run.scenario, run.seed) == ("sc", 3)
    [oracle] = run.strategies  # er-lr has no rows
    assert (oracle.label, oracle.name, oracle.seed, oracle.replica) == ("retrain", "retrain", 3, 1)
    for got, want in zip(oracle.records, written[0].records):
        assert (got.step, got.kind, got.time_s) == (want.step, want.kind, want.time_s)
        assert {k: v for k, v in got.values.items() if v is not None} == {
            k: v for k, v in want.values.items() if v is not None and np.isfinite(v)}
        assert got.per_task == want.per_task
    assert oracle.records[1].values["TA"] == 0.1 + 0.2  # the exact float, not a rounded one
    assert oracle.final == {"AvgGap_mean": 0.0, "AIA": 0.9, "BWT": None, "Forgetting": None,
                            **{m: None for m in FINAL_CSV_METRICS[4:]}}


def test_read_run_without_summary_or_timings(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text("strategy,seed,replica,step,event_kind,metric,value\n"
                                          "a,0,1,0,learn,TA,0.5\na,1,1,0,learn,TA,0.7\na,0,1,final,run,AIA,0.5\n")
    run = read_run(tmp_path)
    assert run.scenario is None and [(s.label, s.seed) for s in run.strategies] == [("a", 0), ("a", 1)]
    assert run.strategies[0].records[0].time_s is None and run.strategies[0].final == {"AIA": 0.5}


@pytest.mark.parametrize("content, match", [
    ("", "metrics.csv is empty"),
    ("a,b\n1,2\n", "lacks the column"),
    ("strategy,seed,replica,step,event_kind,metric,value\ner,0,1,zero,learn,TA,0.5\n", "line 2"),
    ("strategy,seed,replica,step,event_kind,metric,value\ner,0,1,1,learn,TA,x\n", "line 2"),
    ("strategy,seed,replica,step,event_kind,metric,value\ner,0,one,1,learn,TA,0.5\n", "line 2"),
    ("strategy,seed,step,event_kind,metric,value\ner,0,1,learn,TA,0.5\n", "lacks the column"),
])
def test_read_run_refuses_bad_files(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "metrics.csv").write_text(content)
    with pytest.raises(ConfigError, match=match):
        read_run(tmp_path)


def test_read_run_of_a_missing_folder_or_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such results folder"):
        read_run(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no metrics.csv") as e:
        read_run(tmp_path)
    assert e.value.file == str(tmp_path)


def test_sweep_files_round_trip(tmp_path: Path) -> None:
    rows = [ResultRow("sc", "er", 0, 1, 2, "class", "TA", 0.1 + 0.2),
            ResultRow("sc", "er", 0, 1, FINAL, "run", "BWT", None), ResultRow("sc", "er", 0, ALL, 2, "class", "KLoM", 1.0)]
    (tmp_path / "results.csv").write_text(results_csv(rows))
    assert (tmp_path / "results.csv").read_text().splitlines() == [
        ",".join(RESULTS_HEADER), f"sc,er,0,1,2,class,TA,{0.1 + 0.2!r}", "sc,er,0,1,final,run,BWT,",
        "sc,er,0,all,2,class,KLoM,1.0"]
    assert read_results(tmp_path / "results.csv") == rows
    agg = [AggregateRow("sc", "er", 2, "class", "TA", 0.5, None, None, 1),
           AggregateRow("sc", "er", 2, "class", "RA", 0.5, 0.1, 0.25, 3)]
    (tmp_path / "aggregate.csv").write_text(aggregate_csv(agg))
    assert (tmp_path / "aggregate.csv").read_text().splitlines()[0] == ",".join(AGGREGATE_HEADER)
    assert read_aggregate(tmp_path / "aggregate.csv") == agg


def test_format_value() -> None:
    assert format_value(0.25) == "0.25" and format_value(None) == "" and format_value(float("inf")) == ""
    assert format_value(1) == "1.0"


def test_check_out(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ConfigError, match="not empty"):
        check_out(tmp_path / "full")
    check_out(tmp_path / "full", resume=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="not a folder"):
        check_out(tmp_path / "file" / "run")
    check_out(tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()
