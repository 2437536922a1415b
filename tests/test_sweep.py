"""``clu sweep`` (DESIGN §10): trial plan, gap join, aggregation, serial and Ray executors, failures, resume.

Everything runs on ``tiny``: digits-class cut to 3 tasks and 1 epoch (a trial takes about a second), with
``naive`` and ``er``. One serial sweep (a module fixture, through ``clu.cli.main``) is the reference the other
tests compare to: the same trials through ``clu run``, on local Ray, and on a Ray head started here must give
the same metric values, bit for bit. The Ray tests are ``slow``: Ray's start-up and each worker's torch import
cost seconds.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import socket
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
from clu.results import FINAL, EventRecord, ResultRow, StrategyResult
from clu.runconfig import run_config_from_toml
from clu.sweeps import aggregate as A
from clu.sweeps import executors as E
from clu.sweeps.plan import SweepRequest, Trial, plan_sweep

TINY = (
    (SCENARIO_DIR / "digits-class.toml").read_text()
    .replace('name = "digits-class"', 'name = "tiny"')
    .replace("n_tasks = 5", "n_tasks = 3")
    .replace("epochs = 5", "epochs = 1")
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
    """results.csv without wall-clock rows: (scenario, strategy, seed, step, kind, metric) → value."""
    out = {}
    for r in _rows(path):
        if "time" in r["metric"]:
            continue
        if trials is not None and (r["strategy"], r["seed"]) not in trials:
            continue
        out[(r["scenario"], r["strategy"], r["seed"], r["step"], r["event_kind"], r["metric"])] = r["value"]
    return out


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str, str]:
    """The reference sweep: tiny × {naive, er} × seeds 0-1, serial executor, through the CLI."""
    base = tmp_path_factory.mktemp("serial")
    code, out, err = _cli([str(_tiny(base)), "--strategies", "naive,er", "--seeds", "0-1",
                           "--executor", "serial", "--out", str(base / "sweep")])
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


def test_plan_runs_the_oracle_once_per_scenario_and_seed() -> None:
    req = SweepRequest(("digits-class", "digits-random-sample"), ("ugclu", "retrain", "er_ga"), (0, 1, 2),
                         executor="serial")
    plan = plan_sweep(req)
    assert plan.scenarios == ("digits-class", "digits-random-sample")
    assert plan.strategies == ("retrain", "ugclu", "er_ga")  # the oracle first, given once
    ids = [t.id for t in plan.trials]
    assert len(ids) == len(set(ids)) == 2 * 3 * 3
    oracle = [t for t in plan.trials if t.is_oracle]
    assert sorted((t.scenario, t.seed) for t in oracle) == sorted(
        (s, n) for s in plan.scenarios for n in (0, 1, 2))
    assert all(t.is_oracle for t in plan.trials[: len(oracle)])  # queued first
    t = plan.trials[-1]
    assert (t.id, t.seed) == ("digits-random-sample/er_ga/2", 2)
    assert t.folder(Path("/x")) == Path("/x/trials/digits-random-sample/er_ga/seed-2")
    # each trial carries exactly one strategy (no oracle inside a strategy trial) and its own seed
    cfg = run_config_from_toml(t.config_toml, "test")
    assert [c.label for c in cfg.strategies] == ["er_ga"] and cfg.seed == 2
    assert cfg.scenario.name == "digits-random-sample"
    # fingerprints differ per trial and depend on the thread count
    assert len({x.fingerprint for x in plan.trials}) == len(plan.trials)
    plan2 = plan_sweep(SweepRequest(req.scenarios, req.strategies, req.seeds, executor="serial",
                                        cpus_per_trial=2))
    assert plan2.trials[0].fingerprint != plan.trials[0].fingerprint


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


# ---------------------------------------------------------------------------------- join and aggregate


def _data(label: str, values: dict[int, dict[str, float | None]], kinds: dict[int, str],
          times: dict[int, float]) -> StrategyResult:
    records = [EventRecord(step, kinds[step], v, {0: 0.5}, times.get(step)) for step, v in sorted(values.items())]
    return StrategyResult(label, label, 3, records, final={"AvgGap_mean": None, "AIA": 0.5})


def test_join_computes_gaps_from_the_oracle_rows() -> None:
    trial = Trial("sc", "er", "er", 3, "", "fp")
    kinds = {0: "learn", 1: "class"}
    mine = _data("er", {0: {"TA": 0.9, "RA": 1.0, "FA": None, "FA_test": None, "MIA": 0.5, "TA_gap": None, "KL": None},
                        1: {"TA": 0.8, "RA": 0.9, "FA": 0.6, "FA_test": 0.5, "MIA": 0.7, "AvgGap": None}},
                 kinds, {0: 1.0, 1: 0.5})
    oracle = _data("retrain", {0: {"TA": 0.95, "RA": 1.0, "FA": None, "FA_test": None, "MIA": 0.25},
                               1: {"TA": 0.9, "RA": 0.9, "FA": 0.0, "FA_test": 0.0, "MIA": 0.1}},
                   kinds, {0: 2.0, 1: 2.0})
    rows = A.join_trial(trial, mine, oracle)
    got = {(r.step, r.metric): r.value for r in rows}
    assert all((r.scenario, r.strategy, r.seed) == ("sc", "er", 3) for r in rows)
    assert got[(0, "TA_gap")] == pytest.approx(0.05) and got[(0, "FA_gap")] is None
    assert got[(1, "FA_gap")] == pytest.approx(0.6) and got[(1, "MIA_gap")] == pytest.approx(0.6)
    assert (0, "KL") not in got  # KL is left out of sweeps
    assert got[(0, "acc_task_0")] == 0.5  # the per-task accuracies follow the event's values
    assert got[(FINAL, "AvgGap_mean")] == pytest.approx((got[(0, "AvgGap")] + got[(1, "AvgGap")]) / 2)
    assert got[(FINAL, "unlearn_time_vs_oracle")] == pytest.approx(0.25)  # 0.5 s vs the oracle's 2 s
    assert got[(FINAL, "time_s")] == pytest.approx(1.5)
    assert got[(FINAL, "AIA")] == 0.5
    no_oracle = {(r.step, r.metric) for r in A.join_trial(trial, mine, None)}
    assert not any(m.endswith("_gap") or m.startswith("AvgGap") for _, m in no_oracle)  # absent, not invented


def test_aggregate_rows_mean_std_n() -> None:
    rows = [ResultRow("sc", "er", seed, 2, "class", "TA", v) for seed, v in ((0, 0.5), (1, 0.7), (2, None))]
    rows += [ResultRow("sc", "er", 0, FINAL, "run", "BWT", -0.1)]
    agg = A.aggregate_rows(rows)
    assert (agg[0].scenario, agg[0].strategy, agg[0].step, agg[0].kind, agg[0].metric) == ("sc", "er", 2, "class", "TA")
    assert agg[0].mean == pytest.approx(0.6) and agg[0].std == pytest.approx(0.1414213562) and agg[0].n == 2
    assert (agg[1].mean, agg[1].std, agg[1].n) == (-0.1, None, 1)  # one seed: no std


# ------------------------------------------------------------------------------------------ serial runs


def test_serial_sweep_writes_every_output(serial: tuple[Path, int, str, str]) -> None:
    out, code, stdout, stderr = serial
    assert code == 0, stderr
    for name in ("results.csv", "aggregate.csv", "table.md", "sweep.json", "sweep_summary.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "results.csv").read_text().splitlines()[0] == "scenario,strategy,seed,step,event_kind,metric,value"
    assert (out / "aggregate.csv").read_text().splitlines()[0] == "scenario,strategy,step,event_kind,metric,mean,std,n"
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == ["forgetting-tiny.png",
                                                                      "stability_plasticity-tiny.png"]
    # the oracle ran exactly once per (scenario, seed): one trial folder and one set of rows per seed
    rows = _rows(out / "results.csv")
    trials = {(r["strategy"], r["seed"]) for r in rows}
    assert trials == {(s, str(n)) for s in ("retrain", "naive", "er") for n in SEEDS}
    ta0 = [r for r in rows
           if r["strategy"] == "retrain" and r["seed"] == "0" and r["step"] == "0" and r["metric"] == "TA"]
    assert len(ta0) == 1
    assert sorted(p.name for p in (out / "trials" / "tiny").iterdir()) == ["er", "naive", "retrain"]
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["finished"] == summary["trials"] == 6 and summary["failed"] == []
    # gap rows exist for every strategy trial, and n counts the seeds
    agg = _rows(out / "aggregate.csv")
    gap = [r for r in agg if r["strategy"] == "er" and r["metric"] == "AvgGap" and r["step"] == "4"]
    assert len(gap) == 1 and gap[0]["n"] == "2" and gap[0]["std"] != ""
    # one progress line per finished trial, the table on stdout
    lines = [x for x in stderr.splitlines() if x.startswith("[")]
    assert len(lines) == 6 and lines[-1].startswith("[6/6] tiny ")
    assert any(x.startswith("[") and " naive seed=1  TA=" in x and "AvgGap=" in x for x in lines)
    assert "| naive |" in stdout and "6/6 trials finished" in stdout
    assert "test_fail_hook" not in json.loads((out / "sweep.json").read_text())  # no test setting, none recorded


def test_clu_report_regenerates_the_table(serial: tuple[Path, int, str, str], capsys: pytest.CaptureFixture) -> None:
    out = serial[0]
    (out / "table.md").rename(out / "table.md.written")
    try:
        assert main(["report", str(out)]) == 0
        assert capsys.readouterr().out == (out / "table.md.written").read_text()  # from results.csv, not a copy
    finally:
        (out / "table.md.written").rename(out / "table.md")


def test_sweep_numbers_equal_clu_run(serial: tuple[Path, int, str, str], tmp_path: Path) -> None:
    """Joined gaps and every other metric equal what one `clu run` process computes (KL aside)."""
    out = serial[0]
    cfg = resolve_config(str(_tiny(tmp_path)), ["naive"], 1, "cpu")
    run(cfg, tmp_path / "run", checkpoints=False, make_plots=False)
    ref = {(r["strategy"], r["step"], r["metric"]): r["value"] for r in _rows(tmp_path / "run" / "metrics.csv")
           if r["metric"] != "KL"}
    got = {(k[1], k[3], k[5]): v for k, v in _values(out / "results.csv", {("retrain", "1"), ("naive", "1")}).items()}
    assert set(ref) <= set(got)
    assert {k: got[k] for k in ref} == ref
    assert any(k[2] == "AvgGap" and v for k, v in ref.items())


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
        ("retrain", "0"), ("retrain", "1"), ("naive", "0")}
    # --resume (no failure injected) runs only the unfinished trial; results now equal the reference sweep's
    code, _, stderr = _cli([*args, "--resume"])
    assert code == 0, stderr
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["ran"] == ["tiny/naive/1"] and len(summary["skipped"]) == 3
    assert "resume: 3 of 4 trials already finished; running 1" in stderr
    keep = {(s, str(n)) for s in ("retrain", "naive") for n in SEEDS}
    assert _values(out / "results.csv") == _values(serial[0] / "results.csv", keep)


def test_killed_sweep_resumes_only_unfinished_trials(serial: tuple[Path, int, str, str], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tiny, out = str(_tiny(tmp_path)), tmp_path / "sweep"
    args = [tiny, "--strategies", "naive", "--seeds", "0-1", "--executor", "serial", "--out", str(out)]
    real, calls = E.run_trial, []

    def killed_on_third(spec: dict, settings: dict) -> dict:
        calls.append(spec["id"])
        if len(calls) == 3:  # killed half-way through the third trial: a folder without done.json
            Path(spec["dir"]).mkdir(parents=True)
            (Path(spec["dir"]) / "metrics.csv").write_text("half a file")
            raise KeyboardInterrupt
        return real(spec, settings)

    monkeypatch.setattr(E, "run_trial", killed_on_third)
    code, _, stderr = _cli(args)
    assert code == 130 and "--resume" in stderr
    assert not (out / "results.csv").exists()
    finished = {t: (out / "trials" / "tiny" / t.split("/")[1] / f"seed-{t[-1]}" / "done.json").stat().st_mtime_ns
                for t in calls[:2]}
    monkeypatch.setattr(E, "run_trial", real)
    code, _, stderr = _cli([*args, "--resume"])
    assert code == 0, stderr
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert sorted(summary["skipped"]) == sorted(calls[:2])
    assert sorted(summary["ran"]) == sorted({"tiny/retrain/0", "tiny/retrain/1", "tiny/naive/0", "tiny/naive/1"}
                                            - set(calls[:2]))
    for t, mtime in finished.items():  # finished trials were not touched
        assert (out / "trials" / "tiny" / t.split("/")[1] / f"seed-{t[-1]}" / "done.json").stat().st_mtime_ns == mtime
    keep = {(s, str(n)) for s in ("retrain", "naive") for n in SEEDS}
    assert _values(out / "results.csv") == _values(serial[0] / "results.csv", keep)


# ---------------------------------------------------------------------------------------------- Ray


@pytest.mark.slow
def test_ray_executor_equals_serial(serial: tuple[Path, int, str, str], tmp_path: Path) -> None:
    out = tmp_path / "ray"
    code, stdout, stderr = _cli([str(_tiny(tmp_path)), "--strategies", "naive,er", "--seeds", "0-1",
                                 "--executor", "ray", "--cpus-per-trial", "1", "--out", str(out)])
    assert code == 0, stderr
    assert _values(out / "results.csv") == _values(serial[0] / "results.csv")
    assert len([x for x in stderr.splitlines() if x.startswith("[")]) == 6
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["executor"] == "ray" and summary["finished"] == 6
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
    keep = {("retrain", "0"), ("retrain", "1"), ("naive", "0")}
    assert _values(out / "results.csv") == _values(serial[0] / "results.csv", keep)
