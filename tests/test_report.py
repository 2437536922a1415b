"""clu.report: the run table and the sweep table (markdown and text), and ``clu report DIR`` from the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clu.cli import main
from clu.config import ConfigError
from clu.report import report, run_table, sweep_table, trial_finals
from clu.results import FINAL, ResultRow, results_csv


def _trial(label: str, seed: int, ta: float, fa: float, gap: float, t: float, last: int = 4) -> list[ResultRow]:
    per_event = {"TA": ta, "FA": fa, "FA_test": None, "MIA": 0.1, "MIA_attack_acc": 0.5}
    rows = [ResultRow("sc", label, seed, 1, "learn", "TA", 0.0)]  # an earlier event: not in the table
    rows += [ResultRow("sc", label, seed, last, "class", m, v) for m, v in per_event.items()]
    rows += [ResultRow("sc", label, seed, FINAL, "run", "AvgGap_mean", gap),
             ResultRow("sc", label, seed, FINAL, "run", "time_s", t)]
    return rows


ROWS = [
    *_trial("retrain", 0, 0.9, 0.0, 0.0, 9.0), *_trial("retrain", 1, 0.9, 0.0, 0.0, 9.0),
    *_trial("a", 0, 0.8, 0.3, 0.1, 1.0), *_trial("a", 1, 0.82, 0.3, 0.12, 1.0),
    *_trial("b", 0, 0.7, 0.1, 0.05, 2.0), *_trial("b", 1, 0.7, 0.1, 0.07, 2.0, last=3),  # diverged at step 3
]


def _cells(text: str) -> dict[str, list[str]]:
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| ") and "strategy" not in line}


def test_trial_finals_take_the_last_event() -> None:
    f = trial_finals(ROWS[-7:])
    assert f == {"TA": 0.7, "FA": 0.1, "FA_test": None, "MIA": 0.1, "MIA_attack_acc": 0.5, "AvgGap": 0.07,
                 "time": 2.0}


def test_sweep_table_marks_the_best_per_column() -> None:
    text = sweep_table(["sc"], ["retrain", "a", "b"], [0, 1], ROWS, {("sc", "b")})
    row = _cells(text)
    assert row["a"][0] == "**81.0 ± 1.4**" and row["b †"][0] == "70.0 ± 0.0"  # TA: highest
    assert row["b †"][1].startswith("**10.0") and not row["a"][1].startswith("**")  # FA: closest to the oracle's 0
    assert row["b †"][5].startswith("**6.00") and row["a"][6].startswith("**1.00")  # AvgGap, time: lowest
    assert row["a"][2] == "–"  # FA_test n/a
    assert not any(c.startswith("**") for c in row["retrain (oracle)"])
    assert "oracle" in text.splitlines()[2] and "target" in text and "† diverged" in text
    assert "Seeds 0, 1: all runs finished." in text


def test_sweep_table_counts_unfinished_runs() -> None:
    text = sweep_table(["sc"], ["retrain", "a", "b"], [0, 1, 2], ROWS, set())
    assert "Seeds 0, 1, 2; finished runs: retrain 2, a 2, b 2." in text


def test_sweep_table_as_text() -> None:
    text = sweep_table(["sc"], ["retrain", "a", "b"], [0, 1], ROWS, set(), fmt="text")
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("strategy"))
    assert lines[head + 1].startswith("---")
    rows = {line.split()[0]: line for line in lines[head + 2:] if line.strip()}
    assert "81.0 ± 1.4*" in rows["a"] and "70.0 ± 0.0*" not in rows["b"]
    assert "|" not in text and "**" not in text


def test_run_table_one_row_per_strategy() -> None:
    summary = {"strategies": {
        "retrain": {"final": {"TA": 0.9, "FA": 0.0, "MIA": 0.1, "AvgGap_mean": 0.0, "time_s": 1.0}},
        "er": {"final": {"TA": 0.8, "FA": None, "MIA": None, "AvgGap_mean": None, "time_s": 0.5},
               "error": "stopped at step 2"}}}
    lines = run_table(summary).splitlines()
    assert lines[0].split() == ["strategy", "TA", "FA", "MIA", "AvgGap", "time_s"]
    assert lines[2].split() == ["retrain", "90.0", "0.0", "10.0", "0.00", "1.00"]
    assert lines[3].split()[:2] == ["er", "80.0"] and "(stopped at step 2)" in lines[3]


def test_report_reads_a_sweep_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "sweep.json").write_text(json.dumps({"scenarios": ["sc"], "strategies": ["retrain", "a", "b"],
                                                     "seeds": [0, 1]}))
    (tmp_path / "results.csv").write_text(results_csv(ROWS))
    done = tmp_path / "trials" / "sc" / "b" / "seed-1" / "done.json"
    done.parent.mkdir(parents=True)
    done.write_text(json.dumps({"scenario": "sc", "strategy": "b", "error": "diverged"}))
    assert report(tmp_path) == sweep_table(["sc"], ["retrain", "a", "b"], [0, 1], ROWS, {("sc", "b")})
    assert main(["report", str(tmp_path), "--format", "text"]) == 0
    assert "b †" in capsys.readouterr().out


def test_report_reads_a_run_folder(tmp_path: Path) -> None:
    summary = {"strategies": {"retrain": {"final": {"TA": 0.9, "time_s": 1.0}}}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert report(tmp_path) == run_table(summary) + "\n"


def test_report_of_something_else_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ConfigError, match="not a sweep or run folder"):
        report(tmp_path)
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith(f"clu: error: {tmp_path / 'nope'}: no such folder")
    (tmp_path / "sweep.json").write_text("{}")
    with pytest.raises(ConfigError, match="lacks scenarios"):
        report(tmp_path)
