"""The Ray executor survives a killed worker, on a private local instance (DESIGN §10, §12).

One trial SIGKILLs its own Ray worker process half-way through its first attempt; the sweep retries it on a
new worker and ends with the serial executor's numbers, the killed attempt's partial folder replaced. The same
workers report how the local instance they run on was started: GCS and node on 127.0.0.1, token auth with a
token file only this user can read.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from clu.sweeps import executors as E
from clu.sweeps import run_sweep
from clu.sweeps.plan import SweepRequest
from tiny import TINY

TARGET = "tiny/naive/0"
LEFTOVER = "left-by-the-killed-attempt"


def _values(path: Path) -> dict[tuple[str, ...], str]:
    """results.csv without wall-clock rows."""
    with path.open(newline="") as f:
        return {tuple(r[k] for k in ("scenario", "strategy", "seed", "replica", "step", "event_kind", "metric")):
                r["value"] for r in csv.DictReader(f) if "time" not in r["metric"]}


def _killing_trainable(real: Callable[..., None], target: str, probe: Path) -> Callable[..., None]:
    """Wrap the Tune trainable: every call records its worker's view of the instance; the first attempt of
    ``target`` SIGKILLs its worker once the trial has started writing its folder. A nested function, so Ray
    ships it by value (the workers cannot import this test module)."""

    def trainable(config: dict[str, Any], packs: dict[str, dict[str, Any]]) -> None:
        import ray

        spec = packs[config["pack"]]
        token = os.environ.get("RAY_AUTH_TOKEN_PATH")
        (probe / f"call-{os.getpid()}-{time.monotonic_ns()}.json").write_text(json.dumps({
            "trial": spec["id"], "pid": os.getpid(), "gcs": ray.get_runtime_context().gcs_address,
            "node_ip": ray.util.get_node_ip_address(), "auth_mode": os.environ.get("RAY_AUTH_MODE"),
            "token_mode": oct(os.stat(token).st_mode & 0o777) if token else None}))
        marker = probe / "killed"
        if spec["id"] == target and not marker.exists():
            marker.write_text(str(os.getpid()))
            folder = Path(spec["dir"])

            def kill_mid_trial() -> None:
                deadline = time.monotonic() + 120
                while not (folder.is_dir() and any(folder.iterdir())) and time.monotonic() < deadline:
                    time.sleep(0.002)
                (folder / LEFTOVER).write_text("a partial attempt")
                os.kill(os.getpid(), signal.SIGKILL)

            threading.Thread(target=kill_mid_trial, daemon=True).start()
        real(config, packs)

    return trainable


def _sweep(req: SweepRequest) -> tuple[Any, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        result = run_sweep(req)
    return result, err.getvalue()


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_a_killed_worker_is_retried_on_a_private_local_instance(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    fields = {"scenarios": (str(scenario),), "strategies": ("naive",), "seeds": (0,), "retries": 1, "shadows": 0}
    serial, _ = _sweep(SweepRequest(**fields, executor="serial", out=tmp_path / "serial"))
    assert serial.exit_code == 0
    probe = tmp_path / "probe"
    probe.mkdir()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # as `make test` exports it: the local instance ignores it
    monkeypatch.setattr(E, "_tune_trainable", _killing_trainable(E._tune_trainable, TARGET, probe))
    result, stderr = _sweep(SweepRequest(**fields, executor="ray", cpus_per_trial=1, out=tmp_path / "ray"))

    assert result.exit_code == 0, stderr
    assert result.summary["retried"] == {TARGET: 2} and result.summary["failed"] == []
    assert "naive seed=0: attempt 1 of 2 failed" in stderr
    calls = [json.loads(p.read_text()) for p in probe.glob("call-*.json")]
    killed = int((probe / "killed").read_text())
    attempts = [c["pid"] for c in calls if c["trial"] == TARGET]
    assert len(attempts) == 2 and attempts.count(killed) == 1  # the retry ran in another worker process
    # the killed attempt's partial folder was replaced, not merged: the serial trial's files, nothing else
    folder = Path(result.out) / "trials" / "tiny" / "naive" / "seed-0"
    assert not (folder / LEFTOVER).exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (Path(serial.out) / folder.relative_to(
        result.out)).iterdir())
    assert _values(Path(result.out) / "results.csv") == _values(Path(serial.out) / "results.csv")
    # the private local instance: loopback only, token auth with a user-only token file (not the caller's mode)
    assert {c["gcs"].rsplit(":", 1)[0] for c in calls} == {"127.0.0.1"}
    assert {c["node_ip"] for c in calls} == {"127.0.0.1"}
    assert {(c["auth_mode"], c["token_mode"]) for c in calls} == {("token", "0o600")}
    assert os.environ["RAY_AUTH_MODE"] == "disabled"  # the caller's environment is restored


def test_background_reports_do_not_block_the_trial_and_all_arrive_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Tune report waits for the driver; the trial only queues it. Leaving the block sends everything, in order.
    A failed report drops the later ones and is raised when the block is left, not in the middle of a trial."""
    from ray import tune

    driver_ready, sent = threading.Event(), []

    def report(result: dict[str, Any]) -> None:
        assert driver_ready.wait(timeout=10), "the trial waited for the report"
        if result["i"] == "bad":
            raise RuntimeError("the session ended")
        sent.append(result["i"])

    monkeypatch.setattr(tune, "report", report)
    with E._BackgroundReports() as queue_report:
        for i in range(20):
            queue_report({"i": i})  # returns although no report can reach the driver yet
        assert sent == []
        driver_ready.set()
    assert sent == list(range(20))
    sent.clear()
    with pytest.raises(RuntimeError, match="the session ended"):
        with E._BackgroundReports() as queue_report:
            for i in (0, "bad", 1, 2):
                queue_report({"i": i})
            time.sleep(0.05)
            queue_report({"i": 3})  # after the failure: no error here, the trial goes on
    assert sent == [0]
