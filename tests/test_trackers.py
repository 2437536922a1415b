"""clu's per-event measurements reach the trackers (issue 16): TensorBoard, the live CSV, W&B (Ray Tune: the packed
Ray sweep test in tests/sweeps/test_pack.py reads them back from Tune's result files)."""

from __future__ import annotations

import csv
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from clu import ConfigError, resolve_config, run
from clu.cli import main
from clu.trackers import LIVE_CSV, TENSORBOARD_DIR, check_log
from tiny import TINY, metrics_csv_values


def _tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two strategies (one unlearning) with the oracle and its twin on the tiny scenario, logged to TensorBoard and
    the live CSV (the default run's every strategy takes a minute here; the path is the same)."""
    tmp = tmp_path_factory.mktemp("trackers")
    config = resolve_config(str(_tiny(tmp)), ["naive", "er_ga"], 0, "cpu")
    run(config, tmp / "run", checkpoints="none", make_plots=False, log=("tensorboard", "csv"))
    return tmp / "run"


def test_tensorboard_holds_every_strategy_s_per_event_values(logged: Path) -> None:
    files = list((logged / TENSORBOARD_DIR).glob("events.out.tfevents*"))
    assert files, "no TensorBoard event file under the run folder"
    acc = EventAccumulator(str(logged / TENSORBOARD_DIR), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    summary = json.loads((logged / "summary.json").read_text())
    for label, entry in summary["strategies"].items():
        for metric in ("TA", "FA", "AvgGap"):
            want = [(row["step"], row[metric]) for row in entry["per_event"] if row[metric] is not None]
            assert f"{label}/{metric}" in tags, (label, metric)
            got = [(e.step, e.value) for e in acc.Scalars(f"{label}/{metric}")]
            assert got == [(s, pytest.approx(v, rel=1e-6)) for s, v in want], (label, metric)
    assert any(t.endswith("/AvgGap") for t in tags) and any(t.endswith("/time_s") for t in tags)


def test_the_live_csv_holds_exactly_the_metrics_csv_values(logged: Path) -> None:
    with (logged / LIVE_CSV).open() as f:
        rows = list(csv.DictReader(f))
    live = {(r["strategy"], int(r["step"]), r["metric"]): float(r["value"]) for r in rows if r["metric"] != "time_s"}
    per_event = metrics_csv_values(logged)
    assert {k: v for k, v in live.items() if k in per_event} == per_event  # every value, bit for bit
    keys = [(r["strategy"], r["step"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys))  # each value published once
    # own values went out live, event by event, before the joined ones of the same unit
    first_gap = next(i for i, r in enumerate(rows) if r["metric"] == "AvgGap")
    assert rows[0]["metric"] == "TA" and first_gap > 0


def test_bad_trackers_are_refused_before_anything_is_written(tmp_path: Path, monkeypatch, capsys) -> None:
    with pytest.raises(ConfigError, match="unknown tracker 'mlflow'"):
        check_log(["mlflow"])
    with pytest.raises(ConfigError, match="publish"):
        check_log([object()])
    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "wandb" else object())
    out = tmp_path / "r"
    assert main(["run", str(_tiny(tmp_path)), "--strategy", "naive", "--log", "wandb", "--out", str(out)]) == 2
    assert "clu-sim[wandb]" in capsys.readouterr().err
    assert not out.exists()


def test_wandb_gets_every_value_offline_under_the_run_folder(tmp_path: Path, monkeypatch) -> None:
    calls: dict[str, Any] = {"log": [], "finished": False}

    class FakeRun:
        def define_metric(self, name: str, **kw: Any) -> None:
            calls.setdefault("defined", []).append((name, kw))

        def log(self, values: dict[str, Any]) -> None:
            calls["log"].append(values)

        def finish(self) -> None:
            calls["finished"] = True

    def init(**kw: Any) -> FakeRun:
        calls["init"] = kw
        return FakeRun()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    config = resolve_config(str(_tiny(tmp_path)), ["naive"], 0, "cpu")
    run(config, tmp_path / "r", checkpoints="none", make_plots=False, log=["wandb"])
    assert calls["init"]["mode"] == "offline" and calls["init"]["dir"] == str(tmp_path / "r")
    assert ("*", {"step_metric": "event_step"}) in calls["defined"] and calls["finished"]
    logged = {(k.rsplit("/", 1)[0], v["event_step"], k.rsplit("/", 1)[1]): x
              for v in calls["log"] for k, x in v.items() if k != "event_step"}
    per_event = metrics_csv_values(tmp_path / "r")
    assert {k: v for k, v in logged.items() if k in per_event} == per_event
