"""clu.results: the run-folder schema — write_run/read_run round trip, the sweep files, bad files, the folder."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from clu.config import ConfigError
from clu.results import (
    AGGREGATE_HEADER,
    FINAL,
    METRICS_HEADER,
    RESULTS_HEADER,
    SUMMARY_EVENT_KEYS,
    TIMINGS_HEADER,
    AggregateRow,
    EventRecord,
    ResultRow,
    StrategyResult,
    aggregate_csv,
    check_out,
    format_value,
    read_aggregate,
    read_results,
    read_run,
    results_csv,
    write_run,
)


def _results() -> list[StrategyResult]:
    oracle = StrategyResult("retrain", "retrain", 3, [
        EventRecord(0, "learn", {"TA": 0.9, "RA": 1.0, "AvgGap": 0.0}, {0: 0.9}, 1.25),
        EventRecord(1, "class", {"TA": 0.1 + 0.2, "FA": 0.0, "KL": float("nan")}, {0: 1 / 3, 1: None}, 0.5),
    ], final={"AvgGap_mean": 0.0, "AIA": 0.9, "BWT": None, "Forgetting": None, "unlearn_time_vs_oracle": 1.0,
              "time_s": 1.75})
    stopped = StrategyResult("er-lr", "er", 3, [], error="stopped at step 0 (learn): diverged",
                             final={"time_s": 0})
    return [oracle, stopped]


def _rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))


def test_write_run_files(tmp_path: Path) -> None:
    summary = write_run(tmp_path, "sc", 3, _results())
    rows = _rows(tmp_path / "metrics.csv")
    assert tuple(rows[0]) == METRICS_HEADER
    step0 = [r for r in rows[1:] if r[2] == "0"]
    # every per-event metric in its fixed order (empty where it does not apply), then the per-task accuracies
    assert [r[4] for r in step0] == [*SUMMARY_EVENT_KEYS, "acc_task_0"]
    assert {r[4]: r[5] for r in step0}["TA"] == "0.9" and {r[4]: r[5] for r in step0}["FA"] == ""
    step1 = {r[4]: r[5] for r in rows[1:] if r[2] == "1"}
    assert step1["TA"] == repr(0.1 + 0.2) and step1["KL"] == "" and step1["acc_task_1"] == ""  # exact repr; NaN empty
    assert [r[4:] for r in rows[1:] if r[2] == FINAL] == [["AvgGap_mean", "0.0"], ["AIA", "0.9"], ["BWT", ""],
                                                         ["Forgetting", ""]]
    assert not any(r[0] == "er-lr" for r in rows)  # no records, no rows
    assert _rows(tmp_path / "timings.csv") == [list(TIMINGS_HEADER), ["retrain", "3", "0", "learn", "1.25"],
                                               ["retrain", "3", "1", "class", "0.5"]]
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    entry = summary["strategies"]["retrain"]
    assert entry["time_s"] == 1.75 and entry["final"]["TA"] == pytest.approx(0.3)  # the last event's values
    assert entry["final"]["unlearn_time_vs_oracle"] == 1.0 and entry["per_event"][1]["KL"] is None
    assert summary["strategies"]["er-lr"]["error"].startswith("stopped")


def test_read_run_round_trip(tmp_path: Path) -> None:
    written = _results()
    write_run(tmp_path, "sc", 3, written)
    run = read_run(tmp_path)
    assert (run.scenario, run.seed) == ("sc", 3)
    [oracle] = run.strategies  # er-lr has no rows
    assert (oracle.label, oracle.name, oracle.seed) == ("retrain", "retrain", 3)
    for got, want in zip(oracle.records, written[0].records):
        assert (got.step, got.kind, got.time_s) == (want.step, want.kind, want.time_s)
        assert {k: v for k, v in got.values.items() if v is not None} == {
            k: v for k, v in want.values.items() if v is not None and np.isfinite(v)}
        assert got.per_task == want.per_task
    assert oracle.records[1].values["TA"] == 0.1 + 0.2  # the exact float, not a rounded one
    assert oracle.final == {"AvgGap_mean": 0.0, "AIA": 0.9, "BWT": None, "Forgetting": None}


def test_read_run_without_summary_or_timings(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text("strategy,seed,step,event_kind,metric,value\n"
                                          "a,0,0,learn,TA,0.5\na,1,0,learn,TA,0.7\na,0,final,run,AIA,0.5\n")
    run = read_run(tmp_path)
    assert run.scenario is None and [(s.label, s.seed) for s in run.strategies] == [("a", 0), ("a", 1)]
    assert run.strategies[0].records[0].time_s is None and run.strategies[0].final == {"AIA": 0.5}


@pytest.mark.parametrize("content, match", [
    ("", "metrics.csv is empty"),
    ("a,b\n1,2\n", "lacks the column"),
    ("strategy,seed,step,event_kind,metric,value\ner,0,zero,learn,TA,0.5\n", "line 2"),
    ("strategy,seed,step,event_kind,metric,value\ner,0,1,learn,TA,x\n", "line 2"),
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
    rows = [ResultRow("sc", "er", 0, 2, "class", "TA", 0.1 + 0.2), ResultRow("sc", "er", 0, FINAL, "run", "BWT", None)]
    (tmp_path / "results.csv").write_text(results_csv(rows))
    assert (tmp_path / "results.csv").read_text().splitlines() == [
        ",".join(RESULTS_HEADER), f"sc,er,0,2,class,TA,{0.1 + 0.2!r}", "sc,er,0,final,run,BWT,"]
    assert read_results(tmp_path / "results.csv") == rows
    agg = [AggregateRow("sc", "er", 2, "class", "TA", 0.5, None, 1)]
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
