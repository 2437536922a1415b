"""One trial in its worker: run its one unit into its folder, then write the ``done.json`` marker.

The worker function of both executors. Ray workers import this module (and with it torch and Avalanche)
once per actor; the trials they run after the first pay no import cost. The Ray executor hands a worker a
**pack** of trials (:mod:`clu.sweeps.pack`), which :func:`run_pack` runs one after the other with the serial
executor's retries, telling the driver about each attempt as it ends. In a Ray Tune trial every per-event
measurement is also reported to Tune as it is known (:class:`clu.trackers.TuneTracker`: one ``tune.report`` per
event, then the joined values), before the executor's closing report; ``settings["log"]`` adds trackers.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import shutil
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch
from threadpoolctl import threadpool_limits

from clu.results import UnitSpec, write_atomic, write_json
from clu.runconfig import run_config_from_toml
from clu.runner import run
from clu.sweeps.plan import DONE, read_done
from clu.trackers import TuneTracker


Report = Callable[[dict[str, Any]], None]


def run_trial(spec: dict[str, Any], settings: dict[str, Any], report: Report | None = None) -> dict[str, Any]:
    """Run one trial into its folder and mark it done.

    ``spec`` is :meth:`clu.sweeps.plan.Trial.spec`; ``settings`` holds ``threads``, ``out`` (the sweep folder)
    and ``fail`` (the tests' failure injection, see :attr:`clu.sweeps.plan.SweepRequest.fail_trials`).
    Raises whatever the run raises (after writing ``error.txt`` into the trial folder). Returns the content
    of ``done.json``. ``report`` (given in a Ray Tune trial) sends its per-event measurements to Tune.
    """
    folder = Path(spec["dir"])
    if folder.exists():
        shutil.rmtree(folder)  # a fresh attempt: nothing of an earlier, unfinished one may leak in
    t0 = time.perf_counter()
    try:
        _injected_failure(spec["id"], settings)
        return _run(spec, settings, folder, t0, report)
    except BaseException as e:
        if not isinstance(e, KeyboardInterrupt):
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(folder / "error.txt", traceback.format_exc())
        raise


def run_pack(pack: dict[str, Any], settings: dict[str, Any], report: Report) -> list[dict]:
    """Run a pack's trials (:meth:`clu.sweeps.pack.Pack.spec`) one after the other; returns the events told.

    A trial already finished with its fingerprint (by an earlier attempt of this pack, whose worker died) is
    skipped. A trial that raises is retried ``settings["retries"]`` times, as :func:`clu.sweeps.executors.run_serial`
    does, and the pack goes on with the next one. ``report`` sends Tune the trials' per-event measurements and
    one event per ended attempt (``clu_event``, JSON): ``{"event": "finished", "trial": id, "done": done.json}``,
    ``{"event": "retry" | "failed", "trial": id, "error": message}``.
    """
    retries = int(settings.get("retries", 0))
    told: list[dict[str, Any]] = []

    def say(event: dict[str, Any]) -> None:
        told.append(event)
        report({"trial": event["trial"], "clu_event": json.dumps(event)})

    for spec in pack["units"]:
        if read_done(Path(spec["dir"]), spec["fingerprint"]) is not None:
            continue
        for attempt in range(retries + 1):
            try:
                done = run_trial(spec, settings, report)
            except Exception as e:  # noqa: BLE001 - any trial error is retried, then reported
                kind = "retry" if attempt < retries else "failed"
                say({"event": kind, "trial": spec["id"], "error": f"{type(e).__name__}: {e}"})
            else:
                say({"event": "finished", "trial": spec["id"], "done": done})
                break
    return told


def _run(spec: dict[str, Any], settings: dict[str, Any], folder: Path, t0: float,
         report: Report | None) -> dict[str, Any]:
    threads = int(settings["threads"])
    config = run_config_from_toml(spec["config_toml"], f"trial {spec['id']}")
    unit = UnitSpec(**spec["unit"])
    # a shadow unit is no reported row, so a run leaves it out of metrics.csv: its trial runs it as the folder's
    # oracle (it is one: a retrain), so that its records and margins are there to read back
    runs_as = replace(unit, role="oracle") if unit.role == "shadow" else unit
    log = (*settings.get("log", ()), *([TuneTracker(report)] if report is not None else []))
    before = torch.get_num_threads()
    try:
        with threadpool_limits(limits=threads):
            summary = run(config, folder, progress=False, checkpoints=settings.get("checkpoints", "none"),
                          make_plots=False, threads=threads, units=[runs_as], log=log)
    finally:
        torch.set_num_threads(before)
    entry = summary.data["strategies"][spec["strategy"]]
    done = {
        "trial": spec["id"],
        "scenario": spec["scenario"],
        "strategy": spec["strategy"],
        "seed": spec["seed"],
        "replica": unit.replica,
        "role": unit.role,
        "fingerprint": spec["fingerprint"],
        "error": entry.get("error"),
        "final": {m: entry["final"].get(m) for m in ("TA", "FA", "MIA")},
        "run_time_s": entry["time_s"],
        "elapsed_s": round(time.perf_counter() - t0, 3),
        "threads": threads,
        "host": platform.node(),
        "finished_at": dt.datetime.now().isoformat(timespec="seconds"),
    }
    write_json(folder / DONE, done)
    return done


def _injected_failure(trial_id: str, settings: dict[str, Any]) -> None:
    """Tests only: raise for the trials ``settings["fail"]`` names (attempts counted in ``OUT/.fail-hook/``)."""
    hook = settings.get("fail")
    if not hook:
        return
    for item in hook.split(","):
        target, _, times = item.strip().partition(":")
        if target != trial_id:
            continue
        if times:
            counter = Path(settings["out"]) / ".fail-hook" / trial_id.replace("/", "__")
            counter.parent.mkdir(parents=True, exist_ok=True)
            n = int(counter.read_text()) if counter.exists() else 0
            counter.write_text(str(n + 1))
            if n >= int(times):
                return
        raise RuntimeError(f"injected test failure: trial {trial_id} fails on purpose")
