"""``clu sweep`` (DESIGN §10): unit plan, joint post-processing, aggregation, serial and Ray executors,
failures, resume.

Everything runs on ``tiny``: digits-class cut to 3 tasks, 1 epoch and no shadow oracles (a trial takes about a
second). Two serial sweeps (module fixtures, through ``clu.cli.main``) are the references the other tests
compare to: ``naive`` and ``er`` with one replica, and ``naive`` with 2 replicas and 2 shadow oracles (KL,
LiRA). The same trials through ``clu run``, on local Ray, and on a Ray head started here must give the same
metric values, bit for bit. The Ray tests are ``slow`` (Ray's start-up and each worker's torch import cost
seconds) and share one xdist group.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from clu import resolve_config, run, sweeps
from clu.cli import main
from clu.config import ConfigError
from clu.paths import SCENARIO_DIR
from clu.results import FINAL, TWIN, EventRecord, ResultRow, Role, Unit, UnitSpec
from clu.runconfig import run_config_from_toml
from clu.sweeps import aggregate as A
from clu.sweeps import executors as E
from clu.sweeps import join as J
from clu.sweeps.plan import SweepRequest, plan_sweep

TINY = (
    (SCENARIO_DIR / "digits-class.toml").read_text()
    .replace('name = "digits-class"', 'name = "tiny"')
    .replace("n_tasks = 5", "n_tasks = 3")
    .replace("epochs = 5", "epochs = 1")
    .replace("shadows = 8", "shadows = 0")
)
SEEDS = (0, 1)


def _tiny(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.toml"
    path.write_text(TINY)
    return path


def _cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["sweep", *args])
    return code, out.getvalue(), err.getvalue()


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _values(path: Path, trials: set[tuple[str, str]] | None = None) -> dict[tuple[str, ...], str]:
    """results.csv without wall-clock rows: (scenario, strategy, seed, replica, step, kind, metric) → value."""
    out = {}
    for r in _rows(path):
        if "time" in r["metric"]:
            continue
        if trials is not None and (r["strategy"], r["seed"]) not in trials:
            continue
        key = (r["scenario"], r["strategy"], r["seed"], r["replica"], r["step"], r["event_kind"], r["metric"])
        out[key] = r["value"]
    return out


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str, str]:
    """The reference sweep: tiny × {naive, er} × seeds 0-1, serial executor, through the CLI."""
    base = tmp_path_factory.mktemp("serial")
    code, out, err = _cli([str(_tiny(base)), "--strategies", "naive,er", "--seeds", "0-1",
                           "--executor", "serial", "--out", str(base / "sweep")])
    return base / "sweep", code, out, err


REPLICA_ARGS = ["--strategies", "naive", "--seeds", "0-1", "--replicas", "2", "--shadows", "2"]
"""The replicas reference: per seed 2 oracles, 2 twins, 2 naive and 1 extra shadow oracle (14 trials)."""


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str, str]:
    """The replicas reference sweep: tiny × naive × seeds 0-1 × 2 replicas, 2 shadows, serial, through the CLI."""
    base = tmp_path_factory.mktemp("replicas")
    code, out, err = _cli([str(_tiny(base)), *REPLICA_ARGS, "--executor", "serial", "--out", str(base / "sweep")])
    return base / "sweep", code, out, err


# ------------------------------------------------------------------------------------------------ plan


def _api(req: SweepRequest) -> tuple[sweeps.SweepResult, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        result = sweeps.run_sweep(req)
    return result, err.getvalue()


def test_clu_sweep_is_the_function_and_ray_stays_unimported() -> None:
    import clu

    assert callable(clu.sweep) and clu.sweep is not sweeps and clu.sweeps is sweeps  # the package has its own name
    code = "import clu, clu.cli, clu.sweeps, sys; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_plan_runs_the_oracle_and_its_twin_once_per_scenario_and_seed() -> None:
    req = SweepRequest(("digits-class", "digits-random-sample"), ("ugclu", "retrain", "er_ga"), (0, 1, 2),
                       executor="serial", shadows=0)
    plan = plan_sweep(req)
    assert plan.scenarios == ("digits-class", "digits-random-sample")
    assert plan.strategies == ("retrain", TWIN, "ugclu", "er_ga")  # the oracle first, given once; then its twin
    ids = [t.id for t in plan.trials]
    assert len(ids) == len(set(ids)) == 2 * 3 * 4
    oracle = [t for t in plan.trials if t.is_oracle]
    assert sorted((t.scenario, t.seed) for t in oracle) == sorted(
        (s, n) for s in plan.scenarios for n in (0, 1, 2))
    assert all(t.is_oracle for t in plan.trials[: len(oracle)])  # queued first
    t = plan.trials[-1]
    assert (t.id, t.seed, t.replica, t.unit.role) == ("digits-random-sample/er_ga/2", 2, 1, "strategy")
    assert t.folder(Path("/x")) == Path("/x/trials/digits-random-sample/er_ga/seed-2")
    twin = next(t for t in plan.trials if t.strategy == TWIN)
    assert twin.folder(Path("/x")) == Path("/x/trials/digits-class/retrain-twin/seed-0")
    assert twin.unit.init_seed == 0 and twin.unit.order_seed != 0  # the oracle's init, its own batch order
    # each trial carries exactly one strategy (no oracle inside a strategy trial) and its own seed
    cfg = run_config_from_toml(t.config_toml, "test")
    assert [c.label for c in cfg.strategies] == ["er_ga"] and cfg.seed == 2
    assert cfg.scenario.name == "digits-random-sample"
    assert [c.label for c in run_config_from_toml(twin.config_toml, "test").strategies] == ["retrain"]
    # fingerprints differ per trial and depend on the thread count
    assert len({x.fingerprint for x in plan.trials}) == len(plan.trials)
    plan2 = plan_sweep(SweepRequest(req.scenarios, req.strategies, req.seeds, executor="serial", shadows=0,
                                    cpus_per_trial=2))
    assert plan2.trials[0].fingerprint != plan.trials[0].fingerprint


def test_plan_replicas_and_shadows_are_trials() -> None:
    req = SweepRequest(("digits-class",), ("er",), (0,), executor="serial", replicas=3, shadows=4)
    plan = plan_sweep(req)
    units = [t.unit for t in plan.trials]
    assert sorted((u.role, u.replica) for u in units) == sorted(
        [(role, k) for role in ("oracle", "twin", "strategy") for k in (1, 2, 3)] + [("shadow", 1), ("shadow", 1)])
    assert plan.replicas == 3 and plan.evaluation["digits-class"].shadows == 4
    # shadows beyond the other replicas' oracles: K - (R - 1) of them, queued with the oracles
    assert [t.strategy for t in plan.trials[:5]] == ["retrain"] * 3 + ["retrain (shadow 1)", "retrain (shadow 2)"]
    ids = {t.id: t for t in plan.trials}
    er2 = ids["digits-class/er/0/r2"]
    assert er2.folder(Path("/x")) == Path("/x/trials/digits-class/er/seed-0-r2")
    assert er2.unit.init_seed == er2.unit.order_seed == ids["digits-class/retrain/0/r2"].unit.init_seed != 0
    assert ids["digits-class/retrain (shadow 2)/0"].folder(Path("/x")) == Path(
        "/x/trials/digits-class/retrain-shadow-2/seed-0")
    assert len({t.fingerprint for t in plan.trials}) == len(plan.trials)  # the unit is in the fingerprint
    # a trial's config and fingerprint depend on its unit only: more replicas or shadows keep finished trials
    more = {t.id: t.fingerprint for t in plan_sweep(SweepRequest(("digits-class",), ("er",), (0,),
                                                                 executor="serial", replicas=4, shadows=6)).trials}
    assert all(more[t.id] == t.fingerprint for t in plan.trials)
    # the scenario file's [evaluation] shadows is the default
    assert plan_sweep(SweepRequest(("digits-class",), ("er",), (0,), executor="serial")).evaluation[
        "digits-class"].shadows == 8


@pytest.mark.parametrize(
    "change, key",
    [
        ({"strategies": ("nope",)}, ""),
        ({"strategies": ("er", "er")}, "--strategies"),
        ({"strategies": ("retrain",)}, "--strategies"),
        ({"strategies": ("clpu_derpp",)}, "--strategies"),
        ({"seeds": ()}, "--seeds"),
        ({"cpus_per_trial": 0.0}, "--cpus-per-trial"),
        ({"cpus_per_trial": 999.0, "executor": "ray"}, "--cpus-per-trial"),
        ({"retries": -1}, "--retries"),
        ({"replicas": 0}, "--replicas"),
        ({"shadows": -1}, "--shadows"),
        ({"address": "auto"}, "--address"),
        ({"device": "cuda", "executor": "ray"}, "--gpus-per-trial"),
        ({"scenarios": ("digits-class", str(SCENARIO_DIR / "digits-class.toml"))}, "name"),
    ],
)
def test_plan_rejects_bad_requests(change: dict, key: str) -> None:
    fields = {"scenarios": ("digits-class",), "strategies": ("er",), "seeds": (0,), "executor": "serial", **change}
    with pytest.raises(ConfigError) as e:
        plan_sweep(SweepRequest(**fields))
    assert key in e.value.key


def test_plan_rejects_a_label_that_names_the_twins_folder(tmp_path: Path) -> None:
    preset = tmp_path / "rt.toml"
    preset.write_text('strategy = "er"\nlabel = "retrain-twin"\n')
    with pytest.raises(ConfigError, match="share the trial folder") as e:
        plan_sweep(SweepRequest(("digits-class",), (str(preset),), (0,), executor="serial", shadows=0))
    assert e.value.key == "--strategies"


def test_out_folder_rules(tmp_path: Path) -> None:
    tiny = str(_tiny(tmp_path))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    code, _, err = _cli([tiny, "--strategies", "naive", "--executor", "serial", "--out", str(tmp_path / "full")])
    assert code == 2 and "not empty" in err and "--resume" in err
    code, _, err = _cli([tiny, "--strategies", "naive", "--executor", "serial", "--resume",
                         "--out", str(tmp_path / "full")])
    assert code == 2 and "nothing to resume" in err
    code, _, err = _cli([tiny, "--strategies", "naive", "--executor", "serial", "--resume"])
    assert code == 2 and "--out" in err
    for flag, value in (("--replicas", "0"), ("--shadows", "-1")):
        with pytest.raises(SystemExit) as e, contextlib.redirect_stderr(io.StringIO()) as err_io:
            main(["sweep", tiny, "--strategies", "naive", flag, value])
        assert e.value.code == 2 and flag in err_io.getvalue()


# ---------------------------------------------------------------------------------- join and aggregate


def _unit(label: str, role: Role, values: dict[int, dict[str, float | None]], times: dict[int, float]) -> Unit:
    kinds = {0: "learn", 1: "class"}
    records = [EventRecord(step, kinds[step], v, {0: 0.5}, times.get(step)) for step, v in sorted(values.items())]
    return Unit(UnitSpec(label, "retrain" if role != "strategy" else label, 1, 3, 3, role), records)


def test_join_group_computes_gaps_from_the_oracle_of_the_replica() -> None:
    mine = _unit("er", "strategy", {0: {"TA": 0.9, "RA": 1.0, "FA": None, "FA_test": None, "MIA": 0.5},
                                    1: {"TA": 0.8, "RA": 0.9, "FA": 0.6, "FA_test": 0.5, "MIA": 0.7}},
                 {0: 1.0, 1: 0.5})
    oracle = _unit("retrain", "oracle", {0: {"TA": 0.95, "RA": 1.0, "FA": None, "FA_test": None, "MIA": 0.25},
                                         1: {"TA": 0.9, "RA": 0.9, "FA": 0.0, "FA_test": 0.0, "MIA": 0.1}},
                   {0: 2.0, 1: 2.0})
    joined = J.join_group([mine, oracle], ("retrain", TWIN, "er"), shadows=0, klom_bins=20)
    assert [(u.spec.label, u.spec.replica) for u in joined] == [("retrain", 1), ("er", 1), ("er", "all")]
    rows = [r for u in joined for r in J.unit_results("sc", 3, u)]
    assert all((r.scenario, r.seed) == ("sc", 3) for r in rows)
    got = {(r.strategy, r.replica, r.step, r.metric): r.value for r in rows}
    er = {(step, m): v for (lab, rep, step, m), v in got.items() if (lab, rep) == ("er", 1)}
    assert er[(0, "TA_gap")] == pytest.approx(0.05) and er[(0, "FA_gap")] is None
    assert er[(1, "FA_gap")] == pytest.approx(0.6) and er[(1, "MIA_gap")] == pytest.approx(0.6)
    assert er[(1, "KL")] is None and er[(1, "LiRA_AUC")] is None  # no margins here, no shadows
    assert er[(0, "acc_task_0")] == 0.5  # the per-task accuracies follow the event's values
    assert er[(0, "time_s")] == 1.0 and er[(1, "time_s")] == 0.5
    assert er[(FINAL, "AvgGap_mean")] == pytest.approx((er[(0, "AvgGap")] + er[(1, "AvgGap")]) / 2)
    assert er[(FINAL, "unlearn_time_vs_oracle")] == pytest.approx(0.25)  # 0.5 s vs the oracle's 2 s
    assert er[(FINAL, "time_s")] == pytest.approx(1.5)
    assert got[("retrain", 1, 1, "AvgGap")] == 0.0
    assert {m for (lab, rep, _, m) in got if rep == "all"} == {"KLoM", "KLoM_p95"}  # null below 16 replicas
    alone = J.join_group([mine], ("retrain", TWIN, "er"), shadows=0, klom_bins=20)
    assert all(r.value is None for r in J.unit_results("sc", 3, alone[0]) if r.metric.endswith("_gap"))


def test_aggregate_rows_mean_std_ci_n_over_seeds() -> None:
    rows = [ResultRow("sc", "er", 0, 1, 2, "class", "TA", 0.4), ResultRow("sc", "er", 0, 2, 2, "class", "TA", 0.6)]
    rows += [ResultRow("sc", "er", seed, 1, 2, "class", "TA", v) for seed, v in ((1, 0.7), (2, None))]
    rows += [ResultRow("sc", "er", 0, 1, FINAL, "run", "BWT", -0.1)]
    agg = A.aggregate_rows(rows)
    assert (agg[0].scenario, agg[0].strategy, agg[0].step, agg[0].kind, agg[0].metric) == ("sc", "er", 2, "class", "TA")
    # seed 0's replicas are averaged first (0.5); then over the seeds where the metric applies
    assert agg[0].mean == pytest.approx(0.6) and agg[0].std == pytest.approx(0.1414213562) and agg[0].n == 2
    assert agg[0].ci95 == pytest.approx(12.7062047 * 0.1)  # t(0.975, 1) × std / √2
    assert (agg[1].mean, agg[1].std, agg[1].ci95, agg[1].n) == (-0.1, None, None, 1)  # one seed: no spread


# ------------------------------------------------------------------------------------------ serial runs


def test_serial_sweep_writes_every_output(serial: tuple[Path, int, str, str]) -> None:
    out, code, stdout, stderr = serial
    assert code == 0, stderr
    for name in ("results.csv", "aggregate.csv", "table.md", "sweep.json", "sweep_summary.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "results.csv").read_text().splitlines()[0] == \
        "scenario,strategy,seed,replica,step,event_kind,metric,value"
    assert (out / "aggregate.csv").read_text().splitlines()[0] == \
        "scenario,strategy,step,event_kind,metric,mean,std,ci95,n"
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == ["forgetting-tiny.png",
                                                                      "stability_plasticity-tiny.png"]
    # the oracle and its twin ran exactly once per (scenario, seed): one trial folder and one set of rows per seed
    rows = _rows(out / "results.csv")
    trials = {(r["strategy"], r["seed"]) for r in rows}
    assert trials == {(s, str(n)) for s in ("retrain", TWIN, "naive", "er") for n in SEEDS}
    assert [x for x in dict.fromkeys(r["strategy"] for r in rows)] == ["retrain", TWIN, "naive", "er"]
    ta0 = [r for r in rows
           if r["strategy"] == "retrain" and r["seed"] == "0" and r["step"] == "0" and r["metric"] == "TA"]
    assert len(ta0) == 1 and ta0[0]["replica"] == "1"
    assert sorted(p.name for p in (out / "trials" / "tiny").iterdir()) == ["er", "naive", "retrain", "retrain-twin"]
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["finished"] == summary["trials"] == 8 and summary["failed"] == []
    assert summary["replicas"] == 1 and summary["shadows"] == {"tiny": 0}
    # gap and KL rows exist for every strategy trial (joined from the oracle's folder), and n counts the seeds
    agg = _rows(out / "aggregate.csv")
    gap = [r for r in agg if r["strategy"] == "er" and r["metric"] == "AvgGap" and r["step"] == "4"]
    assert len(gap) == 1 and gap[0]["n"] == "2" and gap[0]["std"] != "" and gap[0]["ci95"] != ""
    kl = [r for r in rows if r["strategy"] in ("er", TWIN) and r["metric"] == "KL" and r["step"] == "4"]
    assert len(kl) == 4 and all(float(r["value"]) > 0 for r in kl)
    # one progress line per finished trial, the table on stdout
    lines = [x for x in stderr.splitlines() if x.startswith("[")]
    assert len(lines) == 8 and lines[-1].startswith("[8/8] tiny ")
    assert any(x.startswith("[") and " naive seed=1  TA=" in x and "AvgGap=" in x for x in lines)
    assert "| naive |" in stdout and "8/8 trials finished" in stdout
    assert "test_fail_hook" not in json.loads((out / "sweep.json").read_text())  # no test setting, none recorded


def test_replicas_sweep_has_replica_rows_lira_and_klom(replicas: tuple[Path, int, str, str]) -> None:
    out, code, stdout, stderr = replicas
    assert code == 0, stderr
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["finished"] == summary["trials"] == 14 and summary["replicas"] == 2
    assert sorted(p.name for p in (out / "trials" / "tiny" / "naive").iterdir()) == [
        "seed-0", "seed-0-r2", "seed-1", "seed-1-r2"]
    assert sorted(p.name for p in (out / "trials" / "tiny" / "retrain-shadow-1").iterdir()) == ["seed-0", "seed-1"]
    rows = _rows(out / "results.csv")
    assert {r["strategy"] for r in rows} == {"retrain", TWIN, "naive"}  # shadow oracles are no rows
    assert {(r["strategy"], r["replica"]) for r in rows} >= {("naive", "1"), ("naive", "2"), ("naive", "all")}
    lira = [r for r in rows if r["metric"] == "LiRA_AUC" and r["step"] == "4"]
    assert len(lira) == 3 * 2 * 2 and all(0 <= float(r["value"]) <= 1 for r in lira)
    before = [r for r in rows if r["metric"] == "LiRA_AUC_before" and r["strategy"] == "naive" and r["step"] == "4"]
    assert len(before) == 4 and all(r["value"] for r in before)  # step 4 is a request
    klom = [r for r in rows if r["metric"] == "KLoM"]
    assert klom and all(r["replica"] == "all" and r["value"] == "" for r in klom)  # null below 16 replicas
    assert any(" naive seed=1 r=2  TA=" in x for x in stderr.splitlines())


def test_trial_summary_says_where_its_gaps_are(serial: tuple[Path, int, str, str]) -> None:
    """A trial runs its unit without the oracle: its summary.json's null gaps point to the sweep's results.csv."""
    trial = json.loads((serial[0] / "trials" / "tiny" / "naive" / "seed-0" / "summary.json").read_text())
    assert trial["strategies"]["naive"]["per_event"][-1]["AvgGap"] is None
    assert "null here" in trial["gaps"] and "the sweep's results.csv" in trial["gaps"]


def test_clu_report_regenerates_the_table(serial: tuple[Path, int, str, str], capsys: pytest.CaptureFixture) -> None:
    out = serial[0]
    (out / "table.md").rename(out / "table.md.written")
    try:
        assert main(["report", str(out)]) == 0
        assert capsys.readouterr().out == (out / "table.md.written").read_text()  # from results.csv, not a copy
    finally:
        (out / "table.md.written").rename(out / "table.md")


def _run_rows(folder: Path) -> dict[tuple[str, ...], str]:
    """A run's metrics.csv: (strategy, replica, step, metric) → value."""
    return {(r["strategy"], r["replica"], r["step"], r["metric"]): r["value"] for r in _rows(folder / "metrics.csv")}


def _sweep_rows(out: Path, seed: int) -> dict[tuple[str, ...], str]:
    """A sweep's results.csv rows of one seed, keyed like :func:`_run_rows`."""
    return {(k[1], k[3], k[4], k[6]): v for k, v in _values(out / "results.csv").items() if k[2] == str(seed)}


def test_sweep_numbers_equal_clu_run(serial: tuple[Path, int, str, str], tmp_path: Path) -> None:
    """Joined gaps, KL and every other metric equal what one `clu run` process computes."""
    cfg = resolve_config(str(_tiny(tmp_path)), ["naive"], 1, "cpu")
    run(cfg, tmp_path / "run", checkpoints="none", make_plots=False)
    ref, got = _run_rows(tmp_path / "run"), _sweep_rows(serial[0], 1)
    assert "gaps" not in json.loads((tmp_path / "run" / "summary.json").read_text())  # all units: gaps are here
    assert set(ref) <= set(got)
    assert {k: got[k] for k in ref} == ref
    assert any(k[3] == "AvgGap" and v for k, v in ref.items()) and any(k[3] == "KL" and v for k, v in ref.items())


def test_replicas_sweep_numbers_equal_clu_run(replicas: tuple[Path, int, str, str], tmp_path: Path) -> None:
    """With 2 replicas and 2 shadow oracles too: KL, LiRA (now and before), gaps, AvgGap_L, the request-only
    figures and the (null) KLoM rows are the run's, bit for bit."""
    cfg = resolve_config(str(_tiny(tmp_path)), ["naive"], 0, "cpu", replicas=2, shadows=2)
    run(cfg, tmp_path / "run", checkpoints="none", make_plots=False)
    ref, got = _run_rows(tmp_path / "run"), _sweep_rows(replicas[0], 0)
    assert set(ref) <= set(got)
    assert {k: got[k] for k in ref} == ref
    for metric in ("KL", "LiRA_AUC", "LiRA_TPR5_before", "LiRA_AUC_gap", "AvgGap_L", "dAvgGap", "AvgGap_req"):
        assert any(k[3] == metric and k[1] == "2" and v for k, v in ref.items()), metric


def test_failing_trial_is_retried_reported_and_resumed(serial: tuple[Path, int, str, str], tmp_path: Path) -> None:
    tiny, out = str(_tiny(tmp_path)), tmp_path / "sweep"
    args = [tiny, "--strategies", "naive", "--seeds", "0-1", "--executor", "serial", "--out", str(out)]
    # naive seed 1 always fails; the oracle of seed 0 fails once and recovers on its retry
    req = SweepRequest((tiny,), ("naive",), SEEDS, executor="serial", out=out, retries=1,
                       fail_trials="tiny/naive/1,tiny/retrain/0:1")
    result, stderr = _api(req)
    assert result.exit_code == 1
    assert json.loads((out / "sweep.json").read_text())["test_fail_hook"] == req.fail_trials
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert [(f["trial"], f["attempts"]) for f in summary["failed"]] == [("tiny/naive/1", 2)]
    assert "fails on purpose" in summary["failed"][0]["error"]
    assert summary["retried"] == {"tiny/retrain/0": 2, "tiny/naive/1": 2}
    assert "trial tiny/naive/1 FAILED after 2 attempt(s)" in stderr
    assert "fails on purpose" in (out / "trials" / "tiny" / "naive" / "seed-1" / "error.txt").read_text()
    # every other trial's rows are written
    assert {(r["strategy"], r["seed"]) for r in _rows(out / "results.csv")} == {
        ("retrain", "0"), ("retrain", "1"), (TWIN, "0"), (TWIN, "1"), ("naive", "0")}
    # --resume (no failure injected) runs only the unfinished trial; results now equal the reference sweep's
    code, _, stderr = _cli([*args, "--resume"])
    assert code == 0, stderr
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["ran"] == ["tiny/naive/1"] and len(summary["skipped"]) == 5
    assert "resume: 5 of 6 trials already finished; running 1" in stderr
    keep = {(s, str(n)) for s in ("retrain", TWIN, "naive") for n in SEEDS}
    assert _values(out / "results.csv") == _values(serial[0] / "results.csv", keep)


def test_killed_sweep_resumes_only_unfinished_trials(serial: tuple[Path, int, str, str], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tiny, out = str(_tiny(tmp_path)), tmp_path / "sweep"
    args = [tiny, "--strategies", "naive", "--seeds", "0-1", "--executor", "serial", "--out", str(out)]
    import clu.sweeps.trial as trial_module  # the serial executor imports run_trial from there when it runs

    real, calls = trial_module.run_trial, []

    def killed_on_third(spec: dict, settings: dict) -> dict:
        calls.append(spec["id"])
        if len(calls) == 3:  # killed half-way through the third trial: a folder without done.json
            Path(spec["dir"]).mkdir(parents=True)
            (Path(spec["dir"]) / "metrics.csv").write_text("half a file")
            raise KeyboardInterrupt
        return real(spec, settings)

    monkeypatch.setattr(trial_module, "run_trial", killed_on_third)
    code, _, stderr = _cli(args)
    assert code == 130 and "--resume" in stderr
    assert not (out / "results.csv").exists()
    finished = {t: (out / "trials" / "tiny" / t.split("/")[1] / f"seed-{t[-1]}" / "done.json").stat().st_mtime_ns
                for t in calls[:2]}
    monkeypatch.setattr(trial_module, "run_trial", real)
    code, _, stderr = _cli([*args, "--resume"])
    assert code == 0, stderr
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert sorted(summary["skipped"]) == sorted(calls[:2])
    every = {f"tiny/{lab}/{n}" for lab in ("retrain", TWIN, "naive") for n in SEEDS}
    assert sorted(summary["ran"]) == sorted(every - set(calls[:2]))
    for t, mtime in finished.items():  # finished trials were not touched
        assert (out / "trials" / "tiny" / t.split("/")[1] / f"seed-{t[-1]}" / "done.json").stat().st_mtime_ns == mtime
    keep = {(s, str(n)) for s in ("retrain", TWIN, "naive") for n in SEEDS}
    assert _values(out / "results.csv") == _values(serial[0] / "results.csv", keep)


# ---------------------------------------------------------------------------------------------- Ray


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_ray_executor_equals_serial(replicas: tuple[Path, int, str, str], tmp_path: Path) -> None:
    """Replicas, twin and shadow oracles on Ray: the same numbers as serially, KL and LiRA included."""
    out = tmp_path / "ray"
    code, stdout, stderr = _cli([str(_tiny(tmp_path)), *REPLICA_ARGS, "--executor", "ray", "--cpus-per-trial", "1",
                                 "--out", str(out)])
    assert code == 0, stderr
    got, ref = _values(out / "results.csv"), _values(replicas[0] / "results.csv")
    assert got == ref
    assert any(k[-1] == "LiRA_AUC" and v for k, v in ref.items()) and any(k[-1] == "KL" and v for k, v in ref.items())
    assert len([x for x in stderr.splitlines() if x.startswith("[")]) == 14
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["executor"] == "ray" and summary["finished"] == 14
    assert list((out / "tune").iterdir())  # Tune's experiment folder under the sweep folder
    assert summary["ray_tmpdir"] is None and not E.ray_tmpdir(out).exists()  # removed after a clean sweep
    assert "RAY_TMPDIR" not in os.environ or os.environ["RAY_TMPDIR"] != str(E.ray_tmpdir(out))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head() -> str:
    """A Ray head on loopback, started here with ``ray start --head --block`` in its own process group.

    It is stopped through that process: SIGTERM makes ``ray start --block`` stop every process it started, and
    whatever is left of its process group is then killed. Never with ``ray stop``, which kills *every* Ray
    process on the machine, other users' sessions included.
    """
    ray = Path(sys.executable).with_name("ray")
    tmp = Path(tempfile.mkdtemp(prefix="clu-rh-", dir="/tmp"))  # short: Unix socket paths stay < 107 bytes
    port, client_port, dash_port = _free_port(), _free_port(), _free_port()
    log = (tmp / "head.log").open("wb")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(
        [str(ray), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
         "--num-gpus=0", "--include-dashboard=false", f"--dashboard-port={dash_port}",
         f"--ray-client-server-port={client_port}", f"--temp-dir={tmp}", "--disable-usage-stats"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while b"Ray runtime started" not in (tmp / "head.log").read_bytes():
            assert proc.poll() is None, (tmp / "head.log").read_text()
            assert time.monotonic() < deadline, "ray start --head took over 180 s"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()  # SIGTERM to `ray start --block` alone: it stops the processes it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # anything of that process group still alive
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_sweep_on_an_existing_ray_cluster(serial: tuple[Path, int, str, str], ray_head: str, tmp_path: Path) -> None:
    out = tmp_path / "cluster"
    # the last trial fails on every attempt (the setting travels to the workers): reported by name, exit 1,
    # the three others written
    req = SweepRequest((str(_tiny(tmp_path)),), ("naive",), SEEDS, address=ray_head, retries=0, out=out,
                       fail_trials="tiny/naive/1")
    result, stderr = _api(req)
    assert result.exit_code == 1, stderr
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["address"] == ray_head
    assert [(f["trial"], f["attempts"]) for f in summary["failed"]] == [("tiny/naive/1", 1)]
    assert "trial tiny/naive/1 FAILED" in stderr
    keep = {("retrain", "0"), ("retrain", "1"), (TWIN, "0"), (TWIN, "1"), ("naive", "0")}
    assert _values(out / "results.csv") == _values(serial[0] / "results.csv", keep)


def test_sweep_files_and_folders_follow_the_umask(serial: tuple[Path, int, str, str]) -> None:
    """Result files and folders as readable as the user's other files (a shared --out on a cluster)."""
    from clu.files import current_umask

    out = serial[0]
    mask = current_umask()
    paths = list(out.rglob("*"))
    assert any(p.name == "results.csv" for p in paths) and any(p.name == "metrics.csv" for p in paths)
    wrong = {p.relative_to(out).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in paths
             if stat.S_IMODE(p.stat().st_mode) != (0o777 if p.is_dir() else 0o666) & ~mask}
    assert not wrong
