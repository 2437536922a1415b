"""``clu sweep`` (DESIGN §10): trial plan, gap join, aggregation, serial and Ray executors, failures, resume.

Everything runs on ``tiny``: digits-class cut to 3 tasks and 1 epoch (a trial takes about a second), with
``naive`` and ``er``. One serial sweep (a module fixture, through ``clu.cli.main``) is the reference the other
tests compare to: the same trials through ``clu run``, on local Ray, and on a Ray head started here must give
the same metric values, bit for bit. The Ray tests are ``slow``: Ray's start-up and each worker's torch import
cost seconds.
"""

from __future__ import annotations

import contextlib
import importlib
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

from clu.cli import main
from clu.config import ConfigError
from clu.paths import SCENARIO_DIR

S = importlib.import_module("clu.sweep")

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


def test_clu_sweep_stays_callable_and_ray_stays_unimported() -> None:
    import clu

    assert callable(clu.sweep) and clu.sweep is S  # the submodule import rebinds the name; it still forwards
    code = "import clu, clu.cli, clu.sweep, sys; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_plan_runs_the_oracle_once_per_scenario_and_seed() -> None:
    req = S.SweepRequest(("digits-class", "digits-random-sample"), ("ugclu", "retrain", "er_ga"), (0, 1, 2),
                         executor="serial")
    plan = S.plan_sweep(req)
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
    cfg = S._run_config_from_toml(t.config_toml, "test")
    assert [c.label for c in cfg.strategies] == ["er_ga"] and cfg.seed == 2
    assert cfg.scenario.name == "digits-random-sample"
    # fingerprints differ per trial and depend on the thread count
    assert len({x.fingerprint for x in plan.trials}) == len(plan.trials)
    plan2 = S.plan_sweep(S.SweepRequest(req.scenarios, req.strategies, req.seeds, executor="serial",
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
        S.plan_sweep(S.SweepRequest(**fields))
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


def _data(values: dict[int, dict[str, str]], kinds: dict[int, str], times: dict[int, float]) -> S.TrialData:
    return S.TrialData([(s, kinds[s]) for s in sorted(values)], values, [("AIA", "0.5"), ("AvgGap_mean", "")],
                       times)


def test_join_computes_gaps_from_the_oracle_rows() -> None:
    trial = S.Trial("sc", "er", "er", 3, "", "fp")
    kinds = {0: "learn", 1: "class"}
    mine = _data({0: {"TA": "0.9", "RA": "1.0", "FA": "", "FA_test": "", "MIA": "0.5", "TA_gap": "", "KL": ""},
                  1: {"TA": "0.8", "RA": "0.9", "FA": "0.6", "FA_test": "0.5", "MIA": "0.7", "AvgGap": ""}},
                 kinds, {0: 1.0, 1: 0.5})
    oracle = _data({0: {"TA": "0.95", "RA": "1.0", "FA": "", "FA_test": "", "MIA": "0.25"},
                    1: {"TA": "0.9", "RA": "0.9", "FA": "0.0", "FA_test": "0.0", "MIA": "0.1"}},
                   kinds, {0: 2.0, 1: 2.0})
    rows = S.join_trial(trial, mine, oracle)
    got = {(r[3], r[5]): r[6] for r in rows}
    assert all(r[:3] == ("sc", "er", 3) for r in rows)
    assert float(got[(0, "TA_gap")]) == pytest.approx(0.05) and got[(0, "FA_gap")] == ""
    assert float(got[(1, "FA_gap")]) == pytest.approx(0.6) and float(got[(1, "MIA_gap")]) == pytest.approx(0.6)
    assert (0, "KL") not in got  # KL is left out of sweeps
    avg0, avg1 = float(got[(0, "AvgGap")]), float(got[(1, "AvgGap")])
    assert float(got[("final", "AvgGap_mean")]) == pytest.approx((avg0 + avg1) / 2)
    assert float(got[("final", "unlearn_time_vs_oracle")]) == pytest.approx(0.25)  # 0.5 s vs the oracle's 2 s
    assert float(got[("final", "time_s")]) == pytest.approx(1.5)
    assert got[("final", "AIA")] == "0.5"
    no_oracle = {(r[3], r[5]) for r in S.join_trial(trial, mine, None)}
    assert not any(m.endswith("_gap") or m.startswith("AvgGap") for _, m in no_oracle)  # absent, not invented


def test_aggregate_rows_mean_std_n() -> None:
    rows = [("sc", "er", seed, 2, "class", "TA", v) for seed, v in ((0, "0.5"), (1, "0.7"), (2, ""))]
    rows += [("sc", "er", 0, "final", "run", "BWT", "-0.1")]
    agg = S.aggregate_rows(rows)
    assert agg[0][:5] == ("sc", "er", 2, "class", "TA")
    assert float(agg[0][5]) == pytest.approx(0.6) and float(agg[0][6]) == pytest.approx(0.1414213562) and agg[0][7] == 2
    assert agg[1][5:] == ("-0.1", "", 1)  # one seed: no std


def test_table_marks_the_best_per_column() -> None:
    plan = S.SweepPlan(("sc",), ("retrain", "a", "b"), (0, 1), ())
    f = lambda ta, fa, gap, t: {"TA": ta, "FA": fa, "FA_test": None, "MIA": 0.1, "MIA_attack_acc": 0.5,  # noqa: E731
                                "AvgGap": gap, "time": t}
    finals = {("sc", "retrain"): [f(0.9, 0.0, 0.0, 9.0)] * 2,
              ("sc", "a"): [f(0.8, 0.3, 0.1, 1.0), f(0.82, 0.3, 0.12, 1.0)],
              ("sc", "b"): [f(0.7, 0.1, 0.05, 2.0), f(0.7, 0.1, 0.07, 2.0)]}
    text = S.render_table(plan, finals, set())
    row = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
           for line in text.splitlines() if line.startswith("| ") and "strategy" not in line}
    assert row["a"][0] == "**81.0 ± 1.4**" and row["b"][0] == "70.0 ± 0.0"  # TA: highest
    assert row["b"][1].startswith("**10.0") and not row["a"][1].startswith("**")  # FA: closest to the oracle's 0
    assert row["b"][5].startswith("**6.00") and row["a"][6].startswith("**1.00")  # AvgGap, time: lowest
    assert row["a"][2] == "–"  # FA_test n/a
    assert not any(c.startswith("**") for c in row["retrain (oracle)"])
    assert "oracle" in text.splitlines()[2] and "target" in text


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
    ta0 = [r for r in rows if r["strategy"] == "retrain" and r["seed"] == "0" and r["step"] == "0" and r["metric"] == "TA"]
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


def test_sweep_numbers_equal_clu_run(serial: tuple[Path, int, str, str], tmp_path: Path) -> None:
    """Joined gaps and every other metric equal what one `clu run` process computes (KL aside)."""
    from clu.runner import resolve_config, run

    out = serial[0]
    cfg = resolve_config(str(_tiny(tmp_path)), ["naive"], 1, "cpu")
    run(cfg, tmp_path / "run", checkpoints=False, make_plots=False)
    ref = {(r["strategy"], r["step"], r["metric"]): r["value"] for r in _rows(tmp_path / "run" / "metrics.csv")
           if r["metric"] != "KL"}
    got = {(k[1], k[3], k[5]): v for k, v in _values(out / "results.csv", {("retrain", "1"), ("naive", "1")}).items()}
    assert set(ref) <= set(got)
    assert {k: got[k] for k in ref} == ref
    assert any(k[2] == "AvgGap" and v for k, v in ref.items())


def test_failing_trial_is_retried_reported_and_resumed(serial: tuple[Path, int, str, str], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    tiny, out = str(_tiny(tmp_path)), tmp_path / "sweep"
    args = [tiny, "--strategies", "naive", "--seeds", "0-1", "--executor", "serial", "--out", str(out)]
    # naive seed 1 always fails; the oracle of seed 0 fails once and recovers on its retry
    monkeypatch.setenv(S.FAIL_HOOK_ENV, "tiny/naive/1,tiny/retrain/0:1")
    code, stdout, stderr = _cli([*args, "--retries", "1"])
    assert code == 1
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert [(f["trial"], f["attempts"]) for f in summary["failed"]] == [("tiny/naive/1", 2)]
    assert "fails on purpose" in summary["failed"][0]["error"]
    assert summary["retried"] == {"tiny/retrain/0": 2, "tiny/naive/1": 2}
    assert "trial tiny/naive/1 FAILED after 2 attempt(s)" in stderr and "1 failed" in stdout
    assert "fails on purpose" in (out / "trials" / "tiny" / "naive" / "seed-1" / "error.txt").read_text()
    # every other trial's rows are written
    assert {(r["strategy"], r["seed"]) for r in _rows(out / "results.csv")} == {
        ("retrain", "0"), ("retrain", "1"), ("naive", "0")}
    # --resume (the hook gone) runs only the unfinished trial; results now equal the reference sweep's
    monkeypatch.delenv(S.FAIL_HOOK_ENV)
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
    real, calls = S.run_trial, []

    def killed_on_third(spec: dict, settings: dict) -> dict:
        calls.append(spec["id"])
        if len(calls) == 3:  # killed half-way through the third trial: a folder without done.json
            Path(spec["dir"]).mkdir(parents=True)
            (Path(spec["dir"]) / "metrics.csv").write_text("half a file")
            raise KeyboardInterrupt
        return real(spec, settings)

    monkeypatch.setattr(S, "run_trial", killed_on_third)
    code, _, stderr = _cli(args)
    assert code == 130 and "--resume" in stderr
    assert not (out / "results.csv").exists()
    finished = {t: (out / "trials" / "tiny" / t.split("/")[1] / f"seed-{t[-1]}" / "done.json").stat().st_mtime_ns
                for t in calls[:2]}
    monkeypatch.setattr(S, "run_trial", real)
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
    assert summary["ray_tmpdir"] is None and not S._ray_tmpdir(out).exists()  # removed after a clean sweep
    assert "RAY_TMPDIR" not in os.environ or os.environ["RAY_TMPDIR"] != str(S._ray_tmpdir(out))


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
def test_sweep_on_an_existing_ray_cluster(serial: tuple[Path, int, str, str], ray_head: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cluster"
    # the last trial fails on every attempt: reported by name, exit 1, the three others written
    monkeypatch.setenv(S.FAIL_HOOK_ENV, "tiny/naive/1")
    code, stdout, stderr = _cli([str(_tiny(tmp_path)), "--strategies", "naive", "--seeds", "0-1",
                                 "--address", ray_head, "--retries", "0", "--out", str(out)])
    assert code == 1, stderr
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["address"] == ray_head
    assert [(f["trial"], f["attempts"]) for f in summary["failed"]] == [("tiny/naive/1", 1)]
    assert "trial tiny/naive/1 FAILED" in stderr
    keep = {("retrain", "0"), ("retrain", "1"), ("naive", "0")}
    assert _values(out / "results.csv") == _values(serial[0] / "results.csv", keep)
