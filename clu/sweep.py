"""``clu sweep``: scenarios × strategies × seeds, on Ray Tune (locally or on a cluster) or serially.

What a sweep is
    One **trial** per (scenario, strategy, seed), plus one **oracle trial** (``retrain``) per (scenario, seed).
    A trial runs :func:`clu.runner.run` for that one strategy into its own run folder
    ``OUT/trials/<scenario>/<strategy>/seed-<n>/`` (checkpoints and plots off), so each trial folder is an
    ordinary run folder (``clu plot`` and ``clu audit`` work on it). Strategy trials do **not** rerun the oracle:
    the runner, given a config without ``retrain``, writes its gap rows empty, and the sweep drops them.
    Gaps are joined at aggregation instead: each strategy's per-event values are paired with the oracle
    trial's values of the same (scenario, seed, step) and :func:`clu.evaluation.with_gaps` gives
    ``<metric>_gap`` and ``AvgGap`` — the very numbers ``clu run`` computes in one process. The oracle runs
    exactly once per (scenario, seed); its own gaps are 0, as in ``clu run``. There is no ordering between
    oracle and strategy trials (oracle trials are merely queued first).

    **KL** (to the oracle's softmax on the forgotten data) is left out of sweeps: it needs both models'
    probabilities, which a run folder does not keep. Use ``clu run`` for KL.

Executors
    ``ray`` (default): one Ray Tune trial per trial above, ``tune.grid_search`` over the explicit trial list
    (each entry names scenario, strategy and seed; the seed is an explicit axis of that list), resources
    ``{"cpu": cpus_per_trial, "gpu": gpus_per_trial}`` per trial, ``FailureConfig(max_failures=retries)``.
    Without ``--address`` a private local Ray instance is started (all CPUs of this machine, no dashboard,
    a 256 MiB object store — trials exchange only small dicts) and shut down at the end. With ``--address``
    the driver connects to an existing cluster: then ``--out`` must be on storage every node sees, and the
    ``clu-sim`` package (and the datasets) must be installed on every node. Trials receive their resolved
    scenario and strategy config as TOML text, so worker nodes need no scenario files.
    ``serial``: the same trial function in this process, one after the other, same retries. Both executors
    set torch's threads *and* the BLAS thread pools (threadpoolctl) to ``max(1, int(cpus_per_trial))``, so
    the two give bit-identical metric values.

Ray settings (DESIGN §3)
    ``RAY_USAGE_STATS_ENABLED=0`` and ``RAY_AUTH_MODE=disabled`` unless already set; ``RAY_CHDIR_TO_TRIAL_DIR=0``
    (Tune passes it on to its workers); all paths absolute. For a local instance ``RAY_TMPDIR`` is
    ``OUT/.ray`` — or, when that path is longer than 36 bytes, ``/tmp/clu-ray-<hash of OUT>``: Ray puts Unix
    sockets ~70 bytes below it and a socket path may not exceed 107 bytes. It is removed after a sweep with
    no failed trial and kept (for the worker logs) otherwise. Tune's own experiment files go to ``OUT/tune/``.
    Ray is imported only here, and only by the Ray executor.

Failures, retries, resume
    A trial that raises is retried ``retries`` times (Tune's ``max_failures``; the same loop serially), each
    attempt in a wiped trial folder. A trial still failing is reported by name (``scenario/strategy/seed``)
    on stderr and in ``sweep_summary.json`` with its attempts and last error (its traceback stays in the
    trial folder's ``error.txt``); the exit status is then 1, and every other trial is still aggregated.
    A strategy that diverges (NaN loss) is not an error of the trial: it is deterministic, so it is not
    retried; its rows up to that event are kept, it is listed under ``diverged`` and the exit status is 1.
    A trial is *finished* when its folder holds ``done.json``, written last and atomically, whose
    ``fingerprint`` (a hash of the trial's resolved config and thread count) matches. ``--resume`` reuses
    ``--out`` and runs only the unfinished trials (a trial folder without a valid marker is wiped and rerun);
    without ``--resume`` a non-empty ``--out`` is refused.

    Test hook, for the tests only: ``CLU_SWEEP_FAIL="scenario/strategy/seed[:n],..."`` in the environment of
    the sweep's *driver* makes the named trials raise at their start (all attempts, or the first ``n``
    attempts only, counted in ``OUT/.fail-hook/``). The driver passes it to the trials in their config, so
    it reaches Ray workers on other nodes too. It is recorded in ``sweep.json`` when set.

Outputs (all written atomically)
    ``results.csv``    scenario, strategy, seed, step, event_kind, metric, value — every trial's rows (value
                       empty = n/a), with the joined ``<metric>_gap``/``AvgGap`` rows, per-event ``time_s``,
                       and the whole-run rows (step ``final``, kind ``run``): AIA, BWT, Forgetting,
                       AvgGap_mean, unlearn_time_vs_oracle, time_s.
    ``aggregate.csv``  scenario,strategy,step,event_kind,metric,mean,std,n — over seeds; ``std`` is the sample
                       standard deviation (ddof=1), empty when n < 2; ``n`` counts seeds where the metric
                       applies.
    ``table.md``       per scenario, final-event TA, FA, FA_test, MIA, MIA_attack_acc, AvgGap (mean over
                       events), time: mean ± std over seeds, the best strategy per column in bold (oracle
                       excluded: TA highest; AvgGap and time lowest; FA, FA_test, MIA, MIA_attack_acc closest
                       to the oracle's value, which is the target).
    ``plots/``         ``clu.plots.plot_sweep``: stability–plasticity and FA over events with ± std bands.
    ``sweep.json`` (the request), ``sweep_summary.json`` (trials, failures, timings, outputs), ``tune/``.

Progress: one line per finished trial on stderr, ``[k/N] scenario strategy seed=s  TA=.. AvgGap=.. (t s)``
(TA in %, AvgGap in points; ``AvgGap=-`` while the oracle of that seed has not finished).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import sys
import time
import tomllib
import traceback
import types
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from clu.config import ConfigError, dump_toml, to_dict
from clu.paths import REPO_ROOT, resolve_scenario
from clu.results import csv_text, format_value, write_atomic, write_json

ORACLE = "retrain"
RESULTS_HEADER = ("scenario", "strategy", "seed", "step", "event_kind", "metric", "value")
AGGREGATE_HEADER = ("scenario", "strategy", "step", "event_kind", "metric", "mean", "std", "n")
DONE = "done.json"
FAIL_HOOK_ENV = "CLU_SWEEP_FAIL"
TABLE_METRICS = ("TA", "FA", "FA_test", "MIA", "MIA_attack_acc")
_SAFE_NAME = re.compile(r"[A-Za-z0-9._+-]+")
_MAX_RAY_TMPDIR = 36


# ------------------------------------------------------------------------------------------- request


@dataclass(frozen=True)
class SweepRequest:
    """What ``clu sweep`` was asked (validated CLI arguments)."""

    scenarios: tuple[str, ...]
    strategies: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    executor: str = "ray"
    """ray | serial."""
    address: str | None = None
    """An existing Ray cluster (``auto``, ``HOST:PORT``, ``ray://...``); None starts a local instance."""
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    retries: int = 1
    resume: bool = False
    out: Path | None = None
    device: str = "cpu"
    progress: bool = True
    """One line per finished trial on stderr."""

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus_per_trial))


@dataclass(frozen=True)
class Trial:
    """One unit of work: one strategy on one scenario with one seed (the oracle is a trial like any other)."""

    scenario: str
    strategy: str
    """The label (folder name, ``strategy`` column of the results)."""
    name: str
    """The registry name."""
    seed: int
    config_toml: str
    """The resolved run config of this one strategy (scenario, strategy, seed, device) as TOML."""
    fingerprint: str

    @property
    def id(self) -> str:
        return f"{self.scenario}/{self.strategy}/{self.seed}"

    @property
    def is_oracle(self) -> bool:
        return self.name == ORACLE

    def folder(self, out: Path) -> Path:
        return out / "trials" / self.scenario / self.strategy / f"seed-{self.seed}"

    def spec(self, out: Path) -> dict[str, Any]:
        """The plain-dict form a worker receives."""
        return {
            "id": self.id,
            "scenario": self.scenario,
            "strategy": self.strategy,
            "seed": self.seed,
            "config_toml": self.config_toml,
            "fingerprint": self.fingerprint,
            "dir": str(self.folder(out)),
        }


@dataclass(frozen=True)
class SweepPlan:
    scenarios: tuple[str, ...]
    """Scenario names, in the order given."""
    strategies: tuple[str, ...]
    """Strategy labels, the oracle first."""
    seeds: tuple[int, ...]
    trials: tuple[Trial, ...]
    """Oracle trials first, then strategy trials; each group by scenario, strategy, seed."""
    sources: dict[str, str] = field(default_factory=dict)
    """Scenario name → the file it came from."""


def _local_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _check_name(kind: str, name: str, key: str) -> None:
    if not _SAFE_NAME.fullmatch(name):
        raise ConfigError(f"{kind} name {name!r} must be letters, digits, '.', '_', '+' or '-' (it names a folder)",
                          key=key)


def plan_sweep(req: SweepRequest) -> SweepPlan:
    """Resolve and validate scenarios and strategies; the full trial list of the sweep."""
    from clu.runner import RunConfig
    from clu.scenario import load_scenario
    from clu.strategies import STRATEGIES, resolve_strategy

    if not req.scenarios:
        raise ConfigError("give at least one scenario", key="scenarios")
    if not req.strategies:
        raise ConfigError("give at least one strategy", key="--strategies")
    if not req.seeds or any((not isinstance(s, int)) or s < 0 for s in req.seeds):
        raise ConfigError(f"seeds must be whole numbers >= 0, got {req.seeds!r}", key="--seeds")
    if req.executor not in ("ray", "serial"):
        raise ConfigError(f"{req.executor!r} is not allowed; choose ray or serial", key="--executor")
    if not req.cpus_per_trial > 0:
        raise ConfigError(f"must be > 0, got {req.cpus_per_trial}", key="--cpus-per-trial")
    if req.gpus_per_trial < 0:
        raise ConfigError(f"must be >= 0, got {req.gpus_per_trial}", key="--gpus-per-trial")
    if req.retries < 0:
        raise ConfigError(f"must be >= 0, got {req.retries}", key="--retries")
    if req.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"{req.device!r} is not allowed; choose auto, cpu or cuda", key="--device")
    if req.device == "cuda" and req.executor == "ray" and req.gpus_per_trial <= 0:
        raise ConfigError("--device cuda on Ray needs --gpus-per-trial > 0 (a trial sees only the GPUs it asked for)",
                          key="--gpus-per-trial")
    if req.address is not None and req.executor != "ray":
        raise ConfigError("--address needs the ray executor", key="--address")
    if req.executor == "ray" and req.address is None and req.cpus_per_trial > _local_cpus():
        raise ConfigError(f"{req.cpus_per_trial} CPUs per trial, but this machine has {_local_cpus()}",
                          key="--cpus-per-trial")

    specs, sources = [], {}
    for s in dict.fromkeys(req.scenarios):
        path = resolve_scenario(s)
        spec = load_scenario(path)
        _check_name("scenario", spec.name, "scenarios")
        if spec.name in sources:
            raise ConfigError(f"two scenario files are both named {spec.name!r} ({sources[spec.name]} and {path}); "
                              "rename one (name = ...)", file=path, key="name")
        sources[spec.name] = str(path.resolve())
        specs.append(spec)
    choices = [resolve_strategy(ORACLE)]
    for s in req.strategies:
        c = resolve_strategy(s)
        if c.name == ORACLE and c.label == ORACLE:
            continue  # the oracle always runs, once per (scenario, seed)
        _check_name("strategy", c.label, "--strategies")
        if c.label in {x.label for x in choices}:
            raise ConfigError(f"strategy {c.label!r} given twice; give each a distinct label", key="--strategies")
        choices.append(c)
    if len(choices) == 1:
        raise ConfigError("give at least one strategy besides the oracle retrain", key="--strategies")
    for spec in specs:
        if spec.setting != "task_aware":
            bad = [c.label for c in choices if STRATEGIES[c.name].task_aware_only]
            if bad:
                raise ConfigError(f"{bad[0]} needs a task_aware scenario; {spec.name} is task_agnostic",
                                  key="--strategies")

    seeds = tuple(dict.fromkeys(req.seeds))
    trials = []
    for group in (choices[:1], choices[1:]):
        for spec in specs:
            for c in group:
                for seed in seeds:
                    cfg = RunConfig(spec, (c,), seed, req.device)
                    text = _config_toml(cfg)
                    fp = hashlib.sha256(f"{text}\nthreads={req.threads}\n".encode()).hexdigest()[:16]
                    trials.append(Trial(spec.name, c.label, c.name, seed, text, fp))
    return SweepPlan(tuple(s.name for s in specs), tuple(c.label for c in choices), seeds, tuple(trials), sources)


def _config_toml(cfg: Any) -> str:
    """A one-strategy run config as TOML (what ``config.toml`` holds, without the version stamp)."""
    c = cfg.strategies[0]
    data = {
        "seed": cfg.seed,
        "device": cfg.device,
        "scenario": to_dict(cfg.scenario),
        "strategies": [{"strategy": c.name, "label": c.label, **to_dict(c.config)}],
    }
    return dump_toml(data)


def _run_config_from_toml(text: str, source: str) -> Any:
    """The inverse of :func:`_config_toml` (validated like ``clu.runner.load_run_config``)."""
    from clu.runner import RunConfig
    from clu.scenario import scenario_from_dict
    from clu.strategies import StrategyChoice, strategy_config

    raw = tomllib.loads(text)
    entry = dict(raw["strategies"][0])
    name, label = entry.pop("strategy"), entry.pop("label")
    choice = StrategyChoice(name, label, strategy_config(name, entry, source=source))
    return RunConfig(scenario_from_dict(raw["scenario"], source), (choice,), raw["seed"], raw["device"])


# --------------------------------------------------------------------------------------------- trial


def run_trial(spec: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Run one trial into its folder and mark it done; the worker function of both executors.

    ``spec`` is :meth:`Trial.spec`; ``settings`` holds ``threads``, ``out`` (the sweep folder) and the test
    hook ``fail``. Raises whatever the run raises (after writing ``error.txt`` into the trial folder).
    Returns the content of ``done.json``.
    """
    folder = Path(spec["dir"])
    if folder.exists():
        shutil.rmtree(folder)  # a fresh attempt: nothing of an earlier, unfinished one may leak in
    t0 = time.perf_counter()
    try:
        _fail_hook(spec["id"], settings)
        return _run_trial(spec, settings, folder, t0)
    except BaseException as e:
        if not isinstance(e, KeyboardInterrupt):
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(folder / "error.txt", traceback.format_exc())
        raise


def _run_trial(spec: dict[str, Any], settings: dict[str, Any], folder: Path, t0: float) -> dict[str, Any]:
    import torch
    from threadpoolctl import threadpool_limits

    from clu.runner import run

    threads = int(settings["threads"])
    config = _run_config_from_toml(spec["config_toml"], f"trial {spec['id']}")
    before = torch.get_num_threads()
    try:
        with threadpool_limits(limits=threads):
            summary = run(config, folder, progress=False, checkpoints=False, make_plots=False, threads=threads)
    finally:
        torch.set_num_threads(before)
    entry = summary.data["strategies"][spec["strategy"]]
    done = {
        "trial": spec["id"],
        "scenario": spec["scenario"],
        "strategy": spec["strategy"],
        "seed": spec["seed"],
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


def _fail_hook(trial_id: str, settings: dict[str, Any]) -> None:
    """The documented test hook (see the module docstring): raise for the trials it names."""
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
        raise RuntimeError(f"{FAIL_HOOK_ENV} test hook: trial {trial_id} fails on purpose")


def read_done(folder: Path, fingerprint: str | None = None) -> dict[str, Any] | None:
    """The trial's ``done.json`` when present, readable and (if given) of the same fingerprint."""
    try:
        done = json.loads((folder / DONE).read_text())
    except (OSError, ValueError):
        return None
    if fingerprint is not None and done.get("fingerprint") != fingerprint:
        return None
    return done


# ------------------------------------------------------------------------------------------ progress


@dataclass
class Outcome:
    trial: Trial
    ok: bool
    attempts: int
    error: str | None = None


class Progress:
    """Collects trial outcomes; prints one line per finished trial (and per retry) on stderr."""

    def __init__(self, out: Path, trials: Sequence[Trial], retries: int, show: bool) -> None:
        self.out, self.total, self.retries, self.show = out, len(trials), retries, show
        self.by_id = {t.id: t for t in trials}
        self.outcomes: dict[str, Outcome] = {}
        self.attempts: dict[str, int] = defaultdict(int)
        """Attempts ended so far, per trial id."""

    def _print(self, text: str) -> None:
        if self.show:
            print(text, file=sys.stderr, flush=True)

    def retry(self, trial_id: str, error: str | None) -> None:
        self.attempts[trial_id] += 1
        t = self.by_id[trial_id]
        self._print(f"      {t.scenario} {t.strategy} seed={t.seed}: attempt {self.attempts[trial_id]} of "
                    f"{self.retries + 1} failed ({error or 'error'}); retrying")

    def finished(self, trial_id: str, done: dict[str, Any] | None = None) -> None:
        """``done``: the marker as the worker reported it (on a cluster, shared storage may show the file late)."""
        t = self.by_id[trial_id]
        if done is None or done.get("fingerprint") != t.fingerprint:
            done = read_done(t.folder(self.out), t.fingerprint)
        if done is None:  # reported done by the executor but no marker: treat as failed
            self.failed(trial_id, "finished without writing done.json")
            return
        self.attempts[trial_id] += 1
        self.outcomes[trial_id] = Outcome(t, True, self.attempts[trial_id], done.get("error"))
        ta = done["final"].get("TA")
        ta_text = "-" if ta is None else f"{100 * ta:.1f}"
        if t.is_oracle:
            gap_text = "(oracle)"
        else:
            gap = _trial_avg_gap(self.out, t)
            gap_text = "AvgGap=-" if gap is None else f"AvgGap={100 * gap:.2f}"
        note = f"  diverged: {done['error']}" if done.get("error") else ""
        self._print(f"[{len(self.outcomes)}/{self.total}] {t.scenario} {t.strategy} seed={t.seed}  "
                    f"TA={ta_text} {gap_text} ({done['elapsed_s']:.1f} s){note}")

    def failed(self, trial_id: str, error: str | None) -> None:
        t = self.by_id[trial_id]
        self.attempts[trial_id] += 1
        error = _last_error(t.folder(self.out)) or error or "unknown error"
        self.outcomes[trial_id] = Outcome(t, False, self.attempts[trial_id], error)
        self._print(f"[{len(self.outcomes)}/{self.total}] {t.scenario} {t.strategy} seed={t.seed}  FAILED after "
                    f"{self.attempts[trial_id]} attempt(s): {error}")


def _last_error(folder: Path) -> str | None:
    """The last line of a trial's ``error.txt`` (the exception), if any."""
    try:
        lines = [x for x in (folder / "error.txt").read_text().splitlines() if x.strip()]
    except OSError:
        return None
    return lines[-1].strip() if lines else None


def _trial_avg_gap(out: Path, t: Trial) -> float | None:
    """Mean AvgGap over events of a finished strategy trial, when its oracle has finished too."""
    oracle_dir = out / "trials" / t.scenario / ORACLE / f"seed-{t.seed}"
    if read_done(oracle_dir) is None:
        return None
    try:
        mine, oracle = read_trial(t.folder(out)), read_trial(oracle_dir)
    except (OSError, ValueError, KeyError):
        return None
    rows = join_trial(t, mine, oracle)
    return next((_float(v) for (_, _, _, step, _, m, v) in rows if step == "final" and m == "AvgGap_mean"), None)


# ------------------------------------------------------------------------------------------ executors


def _run_serial(todo: Sequence[Trial], out: Path, settings: dict[str, Any], retries: int, progress: Progress) -> None:
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


def _ray_tmpdir(out: Path) -> Path:
    """A temp dir for a local Ray instance: under the sweep folder when short enough for Unix sockets."""
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
    from ray import tune

    done = run_trial(config["trial"], config["settings"])
    tune.report({"trial": done["trial"], "elapsed_s": done["elapsed_s"], "clu_done": json.dumps(done)})


def _run_ray(todo: Sequence[Trial], out: Path, settings: dict[str, Any], req: SweepRequest, stamp: str,
             progress: Progress) -> Path | None:
    """Run the trials on Ray Tune; returns the local Ray temp dir when one was started here.

    The Ray environment variables are set for the duration of the call and restored afterwards.
    """
    env = {"RAY_USAGE_STATS_ENABLED": os.environ.get("RAY_USAGE_STATS_ENABLED", "0"),
           "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
           "RAY_CHDIR_TO_TRIAL_DIR": "0",
           # Ctrl-C ends the sweep at once (KeyboardInterrupt); `clu sweep --resume` continues it, not Tuner.restore
           "TUNE_DISABLE_SIGINT_HANDLER": "1"}
    tmpdir = None
    if req.address is None:
        tmpdir = _ray_tmpdir(out)
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
    import ray
    from ray import tune

    common = {"logging_level": logging.WARNING, "log_to_driver": False}
    if req.address is None:
        ray.init(num_cpus=_local_cpus(), include_dashboard=False, object_store_memory=256 * 1024**2,
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
                progress.retry(tid, _last_error(Path(trial.config["trial"]["dir"])))

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


# ---------------------------------------------------------------------------------------- aggregation


@dataclass
class TrialData:
    """A finished trial's run folder, parsed."""

    events: list[tuple[int, str]]
    per_event: dict[int, dict[str, str]]
    final: list[tuple[str, str]]
    times: dict[int, float]


def read_trial(folder: Path) -> TrialData:
    events: list[tuple[int, str]] = []
    per_event: dict[int, dict[str, str]] = {}
    final: list[tuple[str, str]] = []
    with (folder / "metrics.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if row["step"] == "final":
                final.append((row["metric"], row["value"]))
                continue
            step = int(row["step"])
            if step not in per_event:
                per_event[step] = {}
                events.append((step, row["event_kind"]))
            per_event[step][row["metric"]] = row["value"]
    times: dict[int, float] = {}
    if (folder / "timings.csv").exists():
        with (folder / "timings.csv").open(newline="") as f:
            for row in csv.DictReader(f):
                times[int(row["step"])] = float(row["time_s"])
    return TrialData(events, per_event, final, times)


def _float(text: str | None) -> float | None:
    return None if text is None or text == "" else float(text)


def join_trial(t: Trial, data: TrialData, oracle: TrialData | None) -> list[tuple[Any, ...]]:
    """The trial's results rows, with gaps joined from the oracle's rows of the same (scenario, seed, step)."""
    from clu.evaluation import GAPPED, with_gaps

    gap_names = {f"{m}_gap" for m in GAPPED} | {"AvgGap", "KL"}
    rows: list[tuple[Any, ...]] = []

    def add(step: Any, kind: str, metric: str, value: str) -> None:
        rows.append((t.scenario, t.strategy, t.seed, step, kind, metric, value))

    avg_gaps: list[float] = []
    for step, kind in data.events:
        values = data.per_event[step]
        for m, v in values.items():
            if m not in gap_names:
                add(step, kind, m, v)
        ref = oracle.per_event.get(step) if oracle is not None else None
        if ref is not None and (step, kind) in oracle.events:
            g = with_gaps({m: _float(values.get(m)) for m in GAPPED}, {m: _float(ref.get(m)) for m in GAPPED})
            for m in GAPPED:
                add(step, kind, f"{m}_gap", format_value(g[f"{m}_gap"]))
            add(step, kind, "AvgGap", format_value(g["AvgGap"]))
            if g["AvgGap"] is not None:
                avg_gaps.append(g["AvgGap"])
        if step in data.times:
            add(step, kind, "time_s", repr(data.times[step]))
    for m, v in data.final:
        if m != "AvgGap_mean":
            add("final", "run", m, v)
    if oracle is not None:
        add("final", "run", "AvgGap_mean", format_value(float(np.mean(avg_gaps)) if avg_gaps else None))
        unlearn = [s for s, k in data.events if k != "learn" and s in data.times]
        t_u = sum(data.times[s] for s in unlearn)
        t_o = sum(oracle.times.get(s, 0.0) for s in unlearn)
        add("final", "run", "unlearn_time_vs_oracle", format_value(round(t_u / t_o, 6) if unlearn and t_o > 0 else None))
    add("final", "run", "time_s", repr(round(sum(data.times.values()), 6)))
    return rows


def aggregate_rows(results: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """results rows → aggregate rows: mean, sample std (empty when n < 2) and n over seeds."""
    groups: dict[tuple[Any, ...], list[float]] = {}
    for scen, strat, _seed, step, kind, metric, value in results:
        vals = groups.setdefault((scen, strat, step, kind, metric), [])
        v = _float(value)
        if v is not None:
            vals.append(v)
    out = []
    for key, vals in groups.items():
        arr = np.asarray(vals, dtype=np.float64)
        mean = format_value(float(arr.mean())) if len(arr) else ""
        std = format_value(float(arr.std(ddof=1))) if len(arr) >= 2 else ""
        out.append((*key, mean, std, len(arr)))
    return out


def _trial_finals(rows: list[tuple[Any, ...]]) -> dict[str, float | None]:
    """A trial's table entries: final-event metrics, AvgGap_mean, total time."""
    last = max((r[3] for r in rows if r[3] != "final"), default=None)
    finals: dict[str, float | None] = {m: None for m in (*TABLE_METRICS, "AvgGap", "time")}
    for r in rows:
        if r[3] == last and r[5] in TABLE_METRICS:
            finals[r[5]] = _float(r[6])
        elif r[3] == "final" and r[5] == "AvgGap_mean":
            finals["AvgGap"] = _float(r[6])
        elif r[3] == "final" and r[5] == "time_s":
            finals["time"] = _float(r[6])
    return finals


_COLUMNS = (
    # key, header, scale, decimals, rule
    ("TA", "TA % ↑", 100, 1, "max"),
    ("FA", "FA % (→ oracle)", 100, 1, "target"),
    ("FA_test", "FA_test % (→ oracle)", 100, 1, "target"),
    ("MIA", "MIA % (→ oracle)", 100, 1, "target"),
    ("MIA_attack_acc", "MIA_attack_acc % (→ oracle)", 100, 1, "target"),
    ("AvgGap", "AvgGap ↓", 100, 2, "min"),
    ("time", "time s ↓", 1, 2, "min"),
)


def render_table(plan: SweepPlan, finals: dict[tuple[str, str], list[dict[str, float | None]]],
                 diverged: set[tuple[str, str]]) -> str:
    """table.md: per scenario, mean ± std over seeds of the final metrics; the best per column in bold."""
    lines = ["# Sweep results", "",
             "Final event of each run, mean ± std over seeds (std: sample standard deviation). "
             "TA, FA, FA_test, MIA, MIA_attack_acc in %; AvgGap (mean gap to the oracle over the events) in points; "
             "time: total wall seconds of the run. **Bold**: best strategy per column, the oracle excluded — "
             "highest TA, lowest AvgGap and time, and for FA, FA_test, MIA and MIA_attack_acc the value closest to "
             "the oracle's (`retrain`), which is the target. KL is not computed in sweeps.", ""]
    for scen in plan.scenarios:
        stats: dict[str, dict[str, tuple[float | None, float | None, int]]] = {}
        for label in plan.strategies:
            entries = finals.get((scen, label), [])
            stats[label] = {}
            for key, _, scale, _, _ in _COLUMNS:
                vals = np.asarray([e[key] for e in entries if e.get(key) is not None], dtype=np.float64) * scale
                mean = float(vals.mean()) if len(vals) else None
                std = float(vals.std(ddof=1)) if len(vals) >= 2 else None
                stats[label][key] = (mean, std, len(vals))
        counts = {lab: len(finals.get((scen, lab), [])) for lab in plan.strategies}
        seeds = f"Seeds {', '.join(map(str, plan.seeds))}"
        if all(n == len(plan.seeds) for n in counts.values()):
            note = f"{seeds}: all runs finished."
        else:
            note = f"{seeds}; finished runs: " + ", ".join(f"{lab} {n}" for lab, n in counts.items()) + "."
        lines += [f"## {scen}", "", note, ""]
        lines.append("| strategy | " + " | ".join(h for _, h, *_ in _COLUMNS) + " |")
        lines.append("|---|" + "---:|" * len(_COLUMNS))
        best: dict[str, set[str]] = {}
        for key, _, _, dec, rule in _COLUMNS:
            target = stats.get(ORACLE, {}).get(key, (None,))[0]
            score = {}
            for label in plan.strategies:
                mean = stats[label][key][0]
                if label == ORACLE or mean is None:
                    continue
                if rule == "max":
                    score[label] = -round(mean, dec)
                elif rule == "min":
                    score[label] = round(mean, dec)
                elif target is not None:
                    score[label] = round(abs(round(mean, dec) - round(target, dec)), dec)
            low = min(score.values(), default=None)
            best[key] = {lab for lab, s in score.items() if s == low} if len(score) > 1 else set()
        for label in plan.strategies:
            cells = []
            for key, _, _, dec, _ in _COLUMNS:
                mean, std, _n = stats[label][key]
                if mean is None:
                    cells.append("–")
                    continue
                text = f"{mean:.{dec}f}" + (f" ± {std:.{dec}f}" if std is not None else "")
                cells.append(f"**{text}**" if label in best[key] else text)
            name = f"{label} (oracle)" if label == ORACLE else label
            if (scen, label) in diverged:
                name += " †"
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if any(s == scen for s, _ in diverged):
            lines += ["", "† diverged in some seed: that run stopped early; its last event is used."]
        lines.append("")
    return "\n".join(lines)


def aggregate(out: Path, plan: SweepPlan) -> dict[str, Any]:
    """Read every finished trial of ``plan``; write results.csv, aggregate.csv, table.md and the plots."""
    data: dict[str, TrialData] = {}
    dones: dict[str, dict[str, Any]] = {}
    for t in plan.trials:
        done = read_done(t.folder(out), t.fingerprint)
        if done is not None:
            data[t.id] = read_trial(t.folder(out))
            dones[t.id] = done
    results: list[tuple[Any, ...]] = []
    finals: dict[tuple[str, str], list[dict[str, float | None]]] = defaultdict(list)
    missing_oracle, diverged = [], set()
    order = {(s, lab, seed): i for i, (s, lab, seed) in enumerate(
        (s, lab, seed) for s in plan.scenarios for lab in plan.strategies for seed in plan.seeds)}
    for t in sorted(plan.trials, key=lambda t: order[(t.scenario, t.strategy, t.seed)]):
        if t.id not in data:
            continue
        oracle = data.get(f"{t.scenario}/{ORACLE}/{t.seed}")
        if oracle is None:
            missing_oracle.append(t.id)
        rows = join_trial(t, data[t.id], oracle)
        results += rows
        finals[(t.scenario, t.strategy)].append(_trial_finals(rows))
        if dones[t.id].get("error"):
            diverged.add((t.scenario, t.strategy))
    write_atomic(out / "results.csv", csv_text(RESULTS_HEADER, results))
    write_atomic(out / "aggregate.csv", csv_text(AGGREGATE_HEADER, aggregate_rows(results)))
    write_atomic(out / "table.md", render_table(plan, finals, diverged))
    plots: list[str] = []
    plot_error = None
    if results:
        try:
            from clu.plots import plot_sweep

            plots = [str(p) for p in plot_sweep(out / "aggregate.csv", out / "plots")]
        except Exception as e:  # noqa: BLE001 - a figure must not cost the sweep its tables
            plot_error = f"{type(e).__name__}: {e}"
            print(f"clu sweep: warning: the plots failed: {plot_error}", file=sys.stderr)
    return {"finished": sorted(data), "missing_oracle": missing_oracle, "plots": plots, "plot_error": plot_error,
            "dones": dones}


# --------------------------------------------------------------------------------------------- sweep


@dataclass
class SweepResult:
    out: Path
    summary: dict[str, Any]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return self.summary["failed"]

    @property
    def exit_code(self) -> int:
        return 1 if self.summary["failed"] or self.summary["diverged"] or self.summary["missing"] else 0


def _prepare_out(req: SweepRequest, stamp: str) -> Path:
    if req.out is None:
        if req.resume:
            raise ConfigError("--resume continues a sweep folder: give it with --out", key="--resume")
        out = REPO_ROOT / "runs" / f"sweep-{stamp}"
    else:
        out = Path(req.out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError("--out exists and is not a folder", file=out)
    if req.resume:
        if not (out / "sweep.json").is_file():
            raise ConfigError("nothing to resume: no sweep.json in this folder", file=out)
    elif out.is_dir() and any(out.iterdir()):
        raise ConfigError("--out is not empty; choose a new folder (or --resume it)", file=out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".write-test").write_text("")
        (out / ".write-test").unlink()
    except OSError as e:
        raise ConfigError(f"--out is not writable ({e.strerror})", file=out) from None
    return out


def run_sweep(req: SweepRequest) -> SweepResult:
    """Plan, run the unfinished trials with the chosen executor, aggregate; see the module docstring."""
    t0 = time.perf_counter()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    plan = plan_sweep(req)
    out = _prepare_out(req, stamp)
    hook = os.environ.get(FAIL_HOOK_ENV) or None
    settings = {"threads": req.threads, "out": str(out), "fail": hook}
    request = {
        "scenarios": list(plan.scenarios), "scenario_files": plan.sources, "strategies": list(plan.strategies),
        "seeds": list(plan.seeds), "executor": req.executor, "address": req.address,
        "cpus_per_trial": req.cpus_per_trial, "gpus_per_trial": req.gpus_per_trial, "retries": req.retries,
        "device": req.device, "threads": req.threads, "trials": len(plan.trials),
        **({"test_fail_hook": hook} if hook else {}),
    }
    write_json(out / "sweep.json", request)

    done_before = [t for t in plan.trials if read_done(t.folder(out), t.fingerprint) is not None]
    todo = [t for t in plan.trials if t not in done_before]
    say = (lambda s: print(s, file=sys.stderr, flush=True)) if req.progress else (lambda s: None)
    n_or = len(plan.scenarios) * len(plan.seeds)
    where = f"Ray at {req.address}" if req.address else ("local Ray" if req.executor == "ray" else "serially")
    say(f"clu sweep: {len(plan.scenarios)} scenario(s) × {len(plan.strategies) - 1} strategy(ies) × "
        f"{len(plan.seeds)} seed(s) + {n_or} oracle run(s) = {len(plan.trials)} trials, {where}; out {out}")
    if done_before:
        say(f"clu sweep: resume: {len(done_before)} of {len(plan.trials)} trials already finished; "
            f"running {len(todo)}")
    progress = Progress(out, todo, req.retries, req.progress)
    ray_tmp = None
    try:
        if todo and req.executor == "serial":
            _run_serial(todo, out, settings, req.retries, progress)
        elif todo:
            ray_tmp = _run_ray(todo, out, settings, req, stamp, progress)
    except KeyboardInterrupt:
        print(f"clu sweep: interrupted; {len(progress.outcomes)} of {len(todo)} trials ended. Continue with the same "
              f"command plus --resume --out {out}", file=sys.stderr)
        raise
    for t in todo:  # anything the executor never reported
        if t.id not in progress.outcomes and read_done(t.folder(out), t.fingerprint) is None:
            progress.failed(t.id, "the executor did not report this trial")
    agg = aggregate(out, plan)
    failed = [{"trial": o.trial.id, "attempts": o.attempts, "error": o.error, "folder": str(o.trial.folder(out))}
              for o in progress.outcomes.values() if not o.ok]
    failed_ids = {f["trial"] for f in failed}
    missing = [t.id for t in plan.trials if t.id not in agg["finished"] and t.id not in failed_ids]
    diverged = [{"trial": tid, "error": d["error"]} for tid, d in sorted(agg["dones"].items()) if d.get("error")]
    if ray_tmp is not None and not failed:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    summary = {
        **request,
        "finished": len(agg["finished"]),
        "ran": [t.id for t in todo if t.id in progress.outcomes and progress.outcomes[t.id].ok],
        "skipped": [t.id for t in done_before],
        "failed": failed,
        "missing": missing,
        "diverged": diverged,
        "missing_oracle": agg["missing_oracle"],
        "retried": {tid: n for tid, n in progress.attempts.items() if n > 1},
        "trial_elapsed_s": {tid: d["elapsed_s"] for tid, d in sorted(agg["dones"].items())},
        "elapsed_s": round(time.perf_counter() - t0, 3),
        "ray_tmpdir": str(ray_tmp) if ray_tmp is not None and ray_tmp.exists() else None,
        "outputs": {"results": "results.csv", "aggregate": "aggregate.csv", "table": "table.md",
                    "plots": [str(Path(p).relative_to(out)) for p in agg["plots"]]},
        "plot_error": agg["plot_error"],
    }
    write_json(out / "sweep_summary.json", summary)
    for f in failed:
        print(f"clu sweep: trial {f['trial']} FAILED after {f['attempts']} attempt(s): {f['error']} "
              f"(traceback: {f['folder']}/error.txt)", file=sys.stderr)
    for tid in missing:
        print(f"clu sweep: trial {tid} did not finish", file=sys.stderr)
    for d in diverged:
        print(f"clu sweep: trial {d['trial']} diverged: {d['error']}", file=sys.stderr)
    if agg["missing_oracle"]:
        print(f"clu sweep: no oracle for {len(agg['missing_oracle'])} trial(s): their gaps are missing",
              file=sys.stderr)
    return SweepResult(out, summary)


def sweep(
    scenarios: Sequence[str],
    strategies: Sequence[str],
    seeds: Sequence[int] = (0,),
    **options: Any,
) -> SweepResult:
    """The Python API: ``clu.sweep(["digits-class"], ["ugclu", "er"], range(5), executor="serial")``.

    ``options`` are the other :class:`SweepRequest` fields (executor, address, cpus_per_trial, gpus_per_trial,
    retries, resume, out, device, progress).
    """
    return run_sweep(SweepRequest(tuple(scenarios), tuple(strategies), tuple(seeds), **options))


def sweep_cli(req: SweepRequest) -> int:
    result = run_sweep(req)
    print((result.out / "table.md").read_text())
    s = result.summary
    status = "ok" if result.exit_code == 0 else (
        f"{len(s['failed'])} failed, {len(s['diverged'])} diverged, {len(s['missing'])} unfinished")
    print(f"results: {result.out}  ({s['finished']}/{s['trials']} trials finished, {status}; {s['elapsed_s']:.1f} s)")
    return result.exit_code


class _CallableModule(types.ModuleType):
    """``clu.sweep`` is both this module and the API function of ``clu/__init__.py``: importing the submodule
    rebinds the package attribute ``clu.sweep`` to the module, so the module itself forwards calls to
    :func:`sweep` and ``clu.sweep(...)`` works whichever of the two the name holds."""

    def __call__(self, *args: Any, **kwargs: Any) -> SweepResult:
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["SweepRequest", "SweepResult", "Trial", "aggregate", "plan_sweep", "run_sweep", "run_trial", "sweep",
           "sweep_cli"]
