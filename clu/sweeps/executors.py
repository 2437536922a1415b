"""The two executors: serial (in this process) and Ray Tune (a local instance or an existing cluster).

Both run :func:`clu.sweeps.trial.run_trial` with the same retries and report to a
:class:`clu.sweeps.progress.Progress`. Ray is imported only when the Ray executor runs, so a serial sweep
never loads it. On Ray, trials travel in packs (:mod:`clu.sweeps.pack`), one Tune trial each, on reused actors
(a worker imports torch, Avalanche and clu once), with no more trials pending than there are slots; each
trial's attempts are reported as they end. ``auto`` runs a sweep below the measured break-even size in-process
and says so. A local instance is private (:mod:`clu.cluster`): loopback only, token auth, no
dashboard. A trial whose worker dies (killed, out of memory) is retried like one that raises; the retry starts
from an empty trial folder (:func:`clu.sweeps.trial.run_trial`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import re
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from clu.config import ConfigError
from clu.cluster import check_loopback, local_instance_env, private_local_instance, reload_ray_auth
from clu.sweeps.plan import SweepRequest, Trial, local_cpus, read_done
from clu.sweeps.progress import Progress, last_error
from clu.sweeps.pack import Pack, choose_executor, pack_trials

_MAX_RAY_TMPDIR = 36


def run_serial(todo: Sequence[Trial], out: Path, settings: dict[str, Any], retries: int, progress: Progress) -> None:
    from clu.sweeps.trial import run_trial  # deferred (torch, Avalanche): a Ray driver never needs them

    for t in todo:
        for attempt in range(retries + 1):
            try:
                run_trial(t.spec(out), settings)
            except Exception as e:  # noqa: BLE001 - any trial error is retried, then reported
                msg = f"{type(e).__name__}: {e}"
                if attempt < retries:
                    progress.retry(t.id, msg)
                else:
                    progress.failed(t.id, msg)
            else:
                progress.finished(t.id)
                break


def ray_tmpdir(out: Path) -> Path:
    """A temp dir for a local Ray instance: under the sweep folder when short enough for Unix sockets
    (Ray puts them ~70 bytes below it, and a socket path may not exceed 107 bytes)."""
    local = out / ".ray"
    if len(str(local)) <= _MAX_RAY_TMPDIR:
        return local
    return Path("/tmp") / f"clu-ray-{hashlib.sha256(str(out).encode()).hexdigest()[:10]}"


class _QuietTrialErrors(logging.Filter):
    """Drop Tune's traceback log of a failed trial attempt: the sweep reports each failure in one line, and
    the traceback stays in the trial folder's ``error.txt`` (and Tune's own ``OUT/tune/.../error.txt``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Trial task failed")


def _tune_trial_name(trial: Any) -> str:
    """Tune trial (folder) name: the pack id, file-name safe."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", trial.config["pack"])


def _last_line(error: BaseException | None) -> str | None:
    """The last line of an error's message (Tune's errors carry the worker's traceback before it)."""
    lines = str(error).strip().splitlines() if error is not None else []
    return lines[-1].strip() if lines else None


def _tune_trainable(config: dict[str, Any], packs: dict[str, dict[str, Any]]) -> None:
    """The Tune function trainable: run the pack ``packs[config["pack"]]``, reporting its trials' per-event values
    and each ended attempt (one result each), then the pack's end. The packs' specs (every unit's config.toml)
    reach the workers once, through the object store (``tune.with_parameters``): Tune's config, which it copies
    into every result it logs, holds the pack's id only."""
    from clu.sweeps.trial import run_pack  # in a Ray worker: imported once per reused actor

    with _BackgroundReports() as report:
        told = run_pack(packs[config["pack"]], config["settings"], report)
        report({"trial": config["pack"], "clu_pack_events": len(told)})


class _BackgroundReports:
    """``ray.tune.report`` from a thread of its own, in order. A function trainable reports synchronously: each
    report waits until the driver has taken the result before it, a round trip of milliseconds (more while the
    driver writes its logs), which a trial reporting in line would spend idle, once per event. Queued here, the
    trial goes on computing; leaving the block waits until every result is reported. A report that fails ends the
    reporting (later results are dropped) but not the trial that happens to be running: the error is raised when
    the block is left, after the pack. If the worker dies first, the queued results are lost: the trials'
    outcomes are recovered from their ``done.json``, their per-event values stay in their metrics.csv only."""

    def __init__(self) -> None:
        from ray import tune  # in a Ray worker: Ray is there already

        self._report = tune.report
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._send, name="clu-tune-report", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> "_BackgroundReports":
        self._thread.start()
        return self

    def __call__(self, result: dict[str, Any]) -> None:
        self._queue.put(result)

    def _send(self) -> None:
        while (result := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._report(result)
                except BaseException as e:  # noqa: BLE001 - raised in the trial's thread when the block ends
                    self._error = e

    def __exit__(self, *exc: object) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None and exc[0] is None:
            raise self._error


@contextmanager
def _environ(env: dict[str, str | None]) -> Iterator[None]:
    """Set (None: unset) these environment variables for the block; restore them afterwards."""
    saved = {k: os.environ.get(k) for k in env}
    try:
        _set_environ(env)
        yield
    finally:
        _set_environ(saved)


def _set_environ(env: dict[str, str | None]) -> None:
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def local_slots(req: SweepRequest) -> int:
    """Trials this machine runs side by side: its CPUs ÷ the CPUs per trial."""
    return max(1, int(local_cpus() // req.cpus_per_trial))


def run_ray(todo: Sequence[Trial], out: Path, settings: dict[str, Any], req: SweepRequest, stamp: str,
            progress: Progress) -> Path | None:
    """Run the trials on Ray Tune; returns the local Ray temp dir when one was started here.

    With ``req.executor == "auto"``, a sweep below the break-even size (:func:`clu.sweeps.pack.choose_executor`)
    runs in-process instead (then None is returned); the choice is said on stderr. The Ray environment variables
    (DESIGN §3) are set for the duration of the call and restored afterwards.
    """
    choice, why = choose_executor(req.executor, len(todo), local_slots(req), req.address,
                                  cuda_without_gpus=req.device == "cuda" and req.gpus_per_trial <= 0)
    if why and req.progress:
        print(f"clu sweep: {why}", file=sys.stderr, flush=True)
    if choice == "serial":
        run_serial(todo, out, settings, req.retries, progress)
        return None
    env: dict[str, str | None] = {
        "RAY_USAGE_STATS_ENABLED": os.environ.get("RAY_USAGE_STATS_ENABLED", "0"),
        "RAY_CHDIR_TO_TRIAL_DIR": "0",
        # Ctrl-C ends the sweep at once (KeyboardInterrupt); `clu sweep --resume` continues it, not Tuner.restore
        "TUNE_DISABLE_SIGINT_HANDLER": "1"}
    tmpdir = None
    if req.address is None:
        tmpdir = ray_tmpdir(out)
        tmpdir.mkdir(parents=True, exist_ok=True)
        env["RAY_TMPDIR"] = str(tmpdir)
        env.update(local_instance_env(tmpdir))
    else:  # the cluster's own setting (checked by the CLI: token, unless --insecure or loopback)
        env["RAY_AUTH_MODE"] = os.environ.get("RAY_AUTH_MODE", "disabled")
    with _environ(env):
        _ray_fit(todo, out, settings, req, stamp, progress, tmpdir)
    return tmpdir


def _ray_fit(todo: Sequence[Trial], out: Path, settings: dict[str, Any], req: SweepRequest, stamp: str,
             progress: Progress, tmpdir: Path | None) -> None:
    import ray  # deferred: a serial sweep never loads Ray
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    common = {"logging_level": logging.WARNING, "log_to_driver": False}
    reload_ray_auth()
    if req.address is None:
        with private_local_instance():
            ray.init(num_cpus=local_cpus(), include_dashboard=False, object_store_memory=256 * 1024**2,
                     _temp_dir=str(tmpdir), **common)
    else:
        ray.init(address=req.address, **common)
    try:
        if req.address is None:
            check_loopback(ray.get_runtime_context().gcs_address)
        res = ray.cluster_resources()
        for key, need in (("CPU", req.cpus_per_trial), ("GPU", req.gpus_per_trial)):
            if need > 0 and res.get(key, 0) < need:
                raise ConfigError(f"a trial asks for {need} {key}, the Ray cluster has {res.get(key, 0)}",
                                  key=f"--{key.lower()}s-per-trial")

        slots = cluster_slots(res, req)
        packs = {p.id: p for p in pack_trials(todo, slots)}
        events = _PackEvents(out, packs, progress)

        class _Callback(tune.Callback):
            def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
                if "clu_event" in result:
                    events.told(json.loads(result["clu_event"]))

            def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                events.worker_died(trial.config["pack"], _last_line(trial.get_error()), gave_up=False)

            def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                events.worker_died(trial.config["pack"], _last_line(trial.get_error()), gave_up=True)

        specs = {pid: p.spec(out) for pid, p in packs.items()}
        trainable = tune.with_resources(tune.with_parameters(_tune_trainable, packs=specs),
                                        {"cpu": req.cpus_per_trial, "gpu": req.gpus_per_trial})
        tuner = tune.Tuner(
            trainable,
            param_space={"pack": tune.grid_search(list(specs)),
                         "settings": {**settings, "retries": req.retries}},
            tune_config=tune.TuneConfig(
                num_samples=1, reuse_actors=True, max_concurrent_trials=slots,
                trial_name_creator=_tune_trial_name, trial_dirname_creator=_tune_trial_name,
            ),
            run_config=tune.RunConfig(
                name=stamp,
                storage_path=str(out / "tune"),
                # a trial's own errors are retried inside its pack; Tune retries a pack whose worker died
                failure_config=tune.FailureConfig(max_failures=req.retries),
                verbose=0,
                # Tune's loggers: result.json only (Tune's results under OUT/tune/); its CSV and TensorBoard
                # copies cost the driver about as much CPU again, taken from the trials on a small machine
                callbacks=[_Callback(), JsonLoggerCallback()],
            ),
        )
        quiet = _QuietTrialErrors()
        controller_log = logging.getLogger("ray.tune.execution.tune_controller")
        controller_log.addFilter(quiet)
        try:
            # Tune's default keeps up to 200 trials pending (placement groups, actors) for autoscaling clusters;
            # here no more wait than there are slots to run them
            with _environ({"TUNE_MAX_PENDING_TRIALS_PG": str(slots), "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}):
                tuner.fit()
        finally:
            controller_log.removeFilter(quiet)
    finally:
        ray.shutdown()


def cluster_slots(resources: dict[str, float], req: SweepRequest) -> int:
    """Trials the Ray cluster runs side by side: its CPUs (and GPUs, when trials ask for them) ÷ a trial's."""
    n = resources.get("CPU", 0) // req.cpus_per_trial
    if req.gpus_per_trial > 0:
        n = min(n, resources.get("GPU", 0) // req.gpus_per_trial)
    return max(1, int(n))


class _PackEvents:
    """Turns what the packs report (attempts as they end) and Tune's worker deaths into progress per trial."""

    def __init__(self, out: Path, packs: dict[str, Pack], progress: Progress) -> None:
        self.out, self.packs, self.progress = out, packs, progress

    def told(self, event: dict[str, Any]) -> None:
        tid = event["trial"]
        if tid in self.progress.outcomes:
            return
        if event["event"] == "finished":
            self.progress.finished(tid, event.get("done"))
        elif event["event"] == "retry":
            self.progress.retry(tid, event.get("error"))
        else:
            self.progress.failed(tid, event.get("error"))

    def worker_died(self, pack_id: str, error: str | None, gave_up: bool) -> None:
        """A pack's worker died (or its trainable raised): the trials it finished are done, the one it was
        running failed an attempt, the rest have not started (and are not run when Tune ``gave_up``)."""
        running = None
        for t in self.packs[pack_id].trials:
            if t.id in self.progress.outcomes:
                continue
            if running is None and read_done(t.folder(self.out), t.fingerprint) is not None:
                self.progress.finished(t.id)  # its report did not reach the driver before the worker died
                continue
            if running is None:
                running = t
                # a killed worker leaves no error.txt: then Tune's error (the actor died) says what happened
                why = last_error(t.folder(self.out)) or error
                (self.progress.failed if gave_up else self.progress.retry)(t.id, why)
            elif gave_up:
                self.progress.failed(t.id, f"not run: trial {running.id} of its pack ended the pack ({error})")
