"""The two executors: serial (in this process) and Ray Tune (a local instance or an existing cluster).

Both run :func:`clu.sweeps.trial.run_trial` with the same retries and report to a
:class:`clu.sweeps.progress.Progress`. Ray is imported only when the Ray executor runs, so a serial sweep
never loads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Sequence

from clu.config import ConfigError
from clu.sweeps.plan import SweepRequest, Trial, local_cpus
from clu.sweeps.progress import Progress, last_error
from clu.sweeps.trial import run_trial

_MAX_RAY_TMPDIR = 36


def run_serial(todo: Sequence[Trial], out: Path, settings: dict[str, Any], retries: int, progress: Progress) -> None:
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
    """Tune trial (folder) name: the trial id, file-name safe."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", trial.config["trial"]["id"])


def _tune_trainable(config: dict[str, Any]) -> None:
    """The Tune function trainable: run the trial, report its marker."""
    from ray import tune  # in a Ray worker: Ray is there already

    done = run_trial(config["trial"], config["settings"])
    tune.report({"trial": done["trial"], "elapsed_s": done["elapsed_s"], "clu_done": json.dumps(done)})


def run_ray(todo: Sequence[Trial], out: Path, settings: dict[str, Any], req: SweepRequest, stamp: str,
            progress: Progress) -> Path | None:
    """Run the trials on Ray Tune; returns the local Ray temp dir when one was started here.

    The Ray environment variables (DESIGN §3) are set for the duration of the call and restored afterwards.
    """
    env = {"RAY_USAGE_STATS_ENABLED": os.environ.get("RAY_USAGE_STATS_ENABLED", "0"),
           "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
           "RAY_CHDIR_TO_TRIAL_DIR": "0",
           # Ctrl-C ends the sweep at once (KeyboardInterrupt); `clu sweep --resume` continues it, not Tuner.restore
           "TUNE_DISABLE_SIGINT_HANDLER": "1"}
    tmpdir = None
    if req.address is None:
        tmpdir = ray_tmpdir(out)
        tmpdir.mkdir(parents=True, exist_ok=True)
        env["RAY_TMPDIR"] = str(tmpdir)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        _ray_fit(todo, out, settings, req, stamp, progress, tmpdir)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return tmpdir


def _ray_fit(todo: Sequence[Trial], out: Path, settings: dict[str, Any], req: SweepRequest, stamp: str,
             progress: Progress, tmpdir: Path | None) -> None:
    import ray  # deferred: a serial sweep never loads Ray
    from ray import tune

    common = {"logging_level": logging.WARNING, "log_to_driver": False}
    if req.address is None:
        ray.init(num_cpus=local_cpus(), include_dashboard=False, object_store_memory=256 * 1024**2,
                 _temp_dir=str(tmpdir), **common)
    else:
        ray.init(address=req.address, **common)
    try:
        res = ray.cluster_resources()
        for key, need in (("CPU", req.cpus_per_trial), ("GPU", req.gpus_per_trial)):
            if need > 0 and res.get(key, 0) < need:
                raise ConfigError(f"a trial asks for {need} {key}, the Ray cluster has {res.get(key, 0)}",
                                  key=f"--{key.lower()}s-per-trial")

        class _Callback(tune.Callback):
            def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                reported = (trial.last_result or {}).get("clu_done")
                progress.finished(trial.config["trial"]["id"], json.loads(reported) if reported else None)

            def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                tid = trial.config["trial"]["id"]
                progress.retry(tid, last_error(Path(trial.config["trial"]["dir"])))

            def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                tid = trial.config["trial"]["id"]
                err = trial.get_error()
                progress.failed(tid, str(err).strip().splitlines()[-1] if err else None)

        trainable = tune.with_resources(_tune_trainable, {"cpu": req.cpus_per_trial, "gpu": req.gpus_per_trial})
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search([t.spec(out) for t in todo]), "settings": settings},
            tune_config=tune.TuneConfig(
                num_samples=1, reuse_actors=True,
                trial_name_creator=_tune_trial_name, trial_dirname_creator=_tune_trial_name,
            ),
            run_config=tune.RunConfig(
                name=stamp,
                storage_path=str(out / "tune"),
                failure_config=tune.FailureConfig(max_failures=req.retries),
                verbose=0,
                callbacks=[_Callback()],
            ),
        )
        quiet = _QuietTrialErrors()
        controller_log = logging.getLogger("ray.tune.execution.tune_controller")
        controller_log.addFilter(quiet)
        try:
            tuner.fit()
        finally:
            controller_log.removeFilter(quiet)
    finally:
        ray.shutdown()
