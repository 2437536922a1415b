"""``clu run``: the resolved config, the results folder and its files (DESIGN §9), the table, re-running a config.

The run-config TOML round trip and the result files' reader have their own tests (test_runconfig, test_results);
here they are checked on a real run."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from clu import RunConfig, resolve_config, run
from clu.config import ConfigError
from clu.events import to_json
from clu.report import run_table
from clu.results import FINAL_CSV_METRICS, read_run
from clu.runconfig import load_run_config
from clu.scenario import events_for
from tiny import TINY

UGCLU_SHORT = 'strategy = "ugclu"\nlabel = "ugclu"\nunlearn_iters = 10\n'
LABELS = ["retrain", "retrain (twin)", "er", "ugclu"]
PER_EVENT_KEYS = {
    "step", "kind", "TA", "RA", "FA", "FA_test", "MIA",
    "TA_gap", "RA_gap", "FA_gap", "FA_test_gap", "MIA_gap", "AvgGap", "time_s",
}
ACCURACIES = ("TA", "RA", "FA", "FA_test", "NA", "OA", "MIA", "MIA_attack_acc", "MIA_thr")
GAPS = ("TA_gap", "RA_gap", "FA_gap", "FA_test_gap", "MIA_gap", "AvgGap")

_SCRIPT = Path(sys.executable).with_name("clu")
CLU = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "clu.cli"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("runner")
    (d / "tiny.toml").write_text(TINY)
    (d / "ugclu-short.toml").write_text(UGCLU_SHORT)
    return {"dir": d, "scenario": d / "tiny.toml", "ugclu": d / "ugclu-short.toml"}


@pytest.fixture(scope="module")
def config(files) -> RunConfig:
    return resolve_config(str(files["scenario"]), ["er", str(files["ugclu"])], 0, "cpu")


@pytest.fixture(scope="module")
def result(files, config):
    out = files["dir"] / "out"
    summary = run(config, out, checkpoints="none", make_plots=False)
    return out, summary


def _csv(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))


# ------------------------------------------------------------------------------------------ config


def test_resolve_config_puts_the_oracle_first(config, files):
    assert [c.label for c in config.strategies] == ["retrain", "er", "ugclu"]  # the twin is a unit, not a choice
    assert [c.name for c in config.strategies] == ["retrain", "er", "ugclu"]
    assert config.strategies[2].config.unlearn_iters == 10  # the preset file's override
    assert (config.seed, config.device, config.scenario.name) == (0, "cpu", "tiny")
    assert (config.replicas, config.shadows, config.n_shadows) == (1, None, 0)
    only = resolve_config(str(files["scenario"]), ["retrain"], None, None)
    assert [c.label for c in only.strategies] == ["retrain"] and only.seed == 0 and only.device == "auto"


def test_resolve_config_refuses_bad_strategy_lists(files):
    with pytest.raises(ConfigError, match="twice"):
        resolve_config(str(files["scenario"]), ["er", "er"], 0, "cpu")
    with pytest.raises(ConfigError, match="clpu_derpp"):
        resolve_config(str(files["scenario"]), ["clpu_derpp"], 0, "cpu")
    with pytest.raises(ConfigError, match="er_magic"):
        resolve_config(str(files["scenario"]), ["er_magic"], 0, "cpu")
    (files["dir"] / "twin.toml").write_text('strategy = "er"\nlabel = "retrain (twin)"\n')
    with pytest.raises(ConfigError, match="reserved"):
        resolve_config(str(files["scenario"]), [str(files["dir"] / "twin.toml")], 0, "cpu")
    with pytest.raises(ConfigError, match=">= 1"):
        resolve_config(str(files["scenario"]), ["er"], 0, "cpu", replicas=0)


def test_run_refuses_a_non_empty_out(files, config):
    busy = files["dir"] / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        run(config, busy, checkpoints="none", make_plots=False)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]


# ------------------------------------------------------------------------------------- the folder


def test_run_writes_the_result_files(result):
    out, _ = result
    for name in ("config.toml", "events.jsonl", "metrics.csv", "timings.csv", "summary.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".*.tmp"))  # no half-written leftovers


def test_config_toml_is_the_resolved_config(result, config):
    out, _ = result
    raw = tomllib.loads((out / "config.toml").read_text())
    assert {"scenario_seed", "device", "scenario", "strategies", "versions"} <= set(raw) and "seed" not in raw
    assert {"clu", "python", "torch", "avalanche"} <= set(raw["versions"])
    assert load_run_config(out / "config.toml") == config


def test_events_jsonl_is_the_event_stream(result, config):
    out, _ = result
    expected = [to_json(e) for e in events_for(config.scenario, config.seed)]
    assert (out / "events.jsonl").read_text().splitlines() == expected


def test_metrics_csv_long_format(result):
    out, summary = result
    rows = _csv(out / "metrics.csv")
    assert rows[0] == ["strategy", "seed", "replica", "step", "event_kind", "metric", "value"]
    body = rows[1:]
    assert body and all(len(r) == 7 for r in body)
    assert {r[0] for r in body} == set(LABELS)
    assert {r[1] for r in body} == {"0"}
    assert "time_s" not in {r[5] for r in body}  # wall-clock time lives in timings.csv
    # KLoM: cross-replica rows of the twin and the strategies, null with one replica
    cross = [r for r in body if r[2] == "all"]
    assert {r[0] for r in cross} == set(LABELS[1:]) and {r[5] for r in cross} == {"KLoM", "KLoM_p95"}
    assert {r[3] for r in cross} == {"2", "4"} and {r[6] for r in cross} == {""}
    body = [r for r in body if r[2] == "1"]
    assert len(body) == len(rows) - 1 - len(cross)
    # every per-event value of summary.json is in metrics.csv, exactly
    per_event = {(label, str(e["step"])): e for label, s in summary.data["strategies"].items() for e in s["per_event"]}
    seen = 0
    for label, _seed, _replica, step, kind, metric, value in body:
        if step == "final":
            assert kind == "run"
            continue
        e = per_event[(label, step)]
        assert kind == e["kind"]
        if metric in e:
            assert (float(value) if value else None) == e[metric], (label, step, metric)
            seen += 1
    assert seen >= len(per_event) * len(PER_EVENT_KEYS - {"step", "kind", "time_s"})


def test_timings_csv(result, config):
    out, _ = result
    rows = _csv(out / "timings.csv")
    assert rows[0] == ["strategy", "seed", "replica", "step", "event_kind", "time_s"]
    n_steps = len({e.step for e in events_for(config.scenario, config.seed)})
    assert len(rows) - 1 == n_steps * len(LABELS)
    assert all(float(r[5]) >= 0 for r in rows[1:])


def test_summary_json_structure(result, config):
    out, summary = result
    data = json.loads((out / "summary.json").read_text())
    assert data == summary.data
    assert data["scenario"] == "tiny" and data["seed"] == 0
    assert list(data["strategies"]) == LABELS
    kinds = ["learn", "learn", "class", "learn", "class"]
    for label, s in data["strategies"].items():
        assert {"final", "per_event", "time_s"} <= set(s)
        assert "error" not in s and s["replicas"] == 1 and "per_replica" not in s
        assert [e["kind"] for e in s["per_event"]] == kinds
        assert [e["step"] for e in s["per_event"]] == list(range(5))
        assert s["time_s"] == pytest.approx(sum(e["time_s"] for e in s["per_event"]), abs=1e-5)
        for e in s["per_event"]:
            assert PER_EVENT_KEYS <= set(e), PER_EVENT_KEYS - set(e)
            for m in ACCURACIES + GAPS:
                v = e.get(m)
                assert v is None or (isinstance(v, float) and 0.0 <= v <= 1.0), (label, e["step"], m, v)
            assert e["time_s"] >= 0
            assert e["TA"] is not None and e["RA"] is not None and e["AvgGap"] is not None
        first, second, request = s["per_event"][:3]
        for e in (first, second):  # nothing forgotten yet: these do not apply
            assert e["FA"] is None and e["FA_test"] is None and e["MIA"] is None
            assert e["FA_gap"] is None and e["MIA_gap"] is None
            assert e["NA"] is not None
        assert first["OA"] is None
        assert request["NA"] is None  # a request learns no new task
        assert request["FA"] is not None and request["FA_test"] is not None and request["FA_gap"] is not None
        final = s["final"]
        assert final["TA"] == s["per_event"][-1]["TA"]
        assert {"AIA", "BWT", "Forgetting", "AvgGap_mean"} <= set(final)


def test_the_oracle_row_has_zero_gaps(result):
    _, summary = result
    oracle = summary.data["strategies"]["retrain"]
    for e in oracle["per_event"]:
        assert e["AvgGap"] == 0.0
        for g in GAPS:
            assert e[g] in (0.0, None)
    assert oracle["final"]["AvgGap_mean"] == 0.0
    # the others are measured against it (er only purges its buffer: it still knows the forgotten class)
    er = summary.data["strategies"]["er"]["per_event"]
    assert er[2]["FA_gap"] == pytest.approx(abs(er[2]["FA"] - oracle["per_event"][2]["FA"]))
    assert er[2]["FA_gap"] > 0


def test_read_run_gives_back_what_the_run_recorded(result):
    out, summary = result
    data = read_run(out)
    assert (data.scenario, data.seed) == ("tiny", 0)
    names = {"retrain (twin)": "retrain"}
    assert [(s.label, s.name, s.seed, s.replica) for s in data.strategies if s.replica == 1] == [
        (lab, names.get(lab, lab), 0, 1) for lab in LABELS]
    for s in (s for s in data.strategies if s.replica == 1):
        entry = summary.data["strategies"][s.label]
        assert [(r.step, r.kind) for r in s.records] == [(e["step"], e["kind"]) for e in entry["per_event"]]
        for r, e in zip(s.records, entry["per_event"]):
            assert {m: r.values[m] for m in PER_EVENT_KEYS - {"step", "kind", "time_s"}} == {
                m: e[m] for m in PER_EVENT_KEYS - {"step", "kind", "time_s"}}
            assert r.time_s == e["time_s"] and r.per_task and all(isinstance(t, int) for t in r.per_task)
        assert s.final == {m: entry["final"][m] for m in FINAL_CSV_METRICS}


def test_run_table_one_row_per_strategy(result):
    _, summary = result
    text = run_table(summary.data)
    lines = text.splitlines()
    rows = {lab: next(line for line in lines if line.startswith(lab + " ")) for lab in LABELS}
    assert [lines.index(rows[lab]) for lab in LABELS] == sorted(lines.index(rows[lab]) for lab in LABELS)
    ta = summary.data["strategies"]["er"]["final"]["TA"]
    assert f"{100 * ta:.1f}" in rows["er"]


# ------------------------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_clu_run_config_toml_reproduces_metrics_byte_for_byte(result, files):
    out, summary = result
    again = files["dir"] / "again"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*CLU, "run", str(out / "config.toml"), "--out", str(again), "--quiet"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (again / "metrics.csv").read_bytes() == (out / "metrics.csv").read_bytes()
    assert (again / "events.jsonl").read_bytes() == (out / "events.jsonl").read_bytes()
    assert load_run_config(again / "config.toml") == load_run_config(out / "config.toml")
    for label in LABELS:  # the table names every strategy
        assert any(line.startswith(label + " ") for line in proc.stdout.splitlines()), proc.stdout
    rerun = json.loads((again / "summary.json").read_text())

    def without_time(d):
        return [{k: v for k, v in e.items() if k != "time_s"} for e in d["per_event"]]

    for label in LABELS:
        assert without_time(rerun["strategies"][label]) == without_time(summary.data["strategies"][label])
    assert math.isfinite(rerun["strategies"]["ugclu"]["final"]["TA"])


def test_the_relearning_attack_changes_no_other_number(result, config, files):
    """metrics.csv with the attack on (the default) is the one with it off plus the Relearn_FA rows' values: the
    copy it fine-tunes is thrown away and it draws from no stream of the run."""
    from dataclasses import replace

    out, summary = result
    ev = replace(config.scenario.evaluation, relearn_fraction=0.0)
    off = run(replace(config, scenario=replace(config.scenario, evaluation=ev)), files["dir"] / "no-relearn",
              checkpoints="none", make_plots=False)
    attack = {"Relearn_FA", "Relearn_FA_gap"}
    on_rows, off_rows = _csv(out / "metrics.csv"), _csv(off.out / "metrics.csv")
    assert [r for r in on_rows if r[5] not in attack] == [r for r in off_rows if r[5] not in attack]
    assert [r[:6] for r in on_rows] == [r[:6] for r in off_rows]  # the same rows, in the same order
    assert {r[6] for r in off_rows if r[5] in attack} == {""}
    measured = {(r[0], r[3]) for r in on_rows if r[5] == "Relearn_FA" and r[6]}
    assert measured == {(label, step) for label in LABELS for step in ("2", "4")}  # the requests (4 is the last)
    assert {r[5] for r in on_rows if r[5].startswith("FA_req_")} == {"FA_req_0", "FA_req_1"}
    er = summary.data["strategies"]["er"]
    assert er["final"]["Relearn_FA"] is not None and er["final"]["FA_resurface_max"] is not None
    assert er["per_event"][2]["FA_resurface_step"] in (3.0, 4.0) and er["per_event"][4]["FA_resurface"] is None
