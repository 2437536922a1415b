"""A whole sweep: plan, prepare the folder, run the unfinished trials with the chosen executor, aggregate,
write ``sweep_summary.json`` and report failures by name."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from clu.config import ConfigError
from clu.results import write_json
from clu.sweeps.aggregate import aggregate
from clu.sweeps.executors import run_ray, run_serial
from clu.sweeps.plan import SweepPlan, SweepRequest, check_sweep_out, plan_sweep, read_done
from clu.sweeps.progress import Progress
from clu.trackers import check_log


@dataclass
class SweepResult:
    out: Path
    summary: dict[str, Any]
    """The content of sweep_summary.json."""

    @property
    def failed(self) -> list[dict[str, Any]]:
        return self.summary["failed"]

    @property
    def exit_code(self) -> int:
        return 1 if self.summary["failed"] or self.summary["diverged"] or self.summary["missing"] else 0


def prepare_sweep_out(req: SweepRequest, stamp: str) -> Path:
    """The sweep folder (absolute: Tune changes folders), checked by :func:`check_sweep_out` and created."""
    out = check_sweep_out(req, stamp)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out is not writable ({e.strerror})", file=out) from None
    return out


def _request_record(req: SweepRequest, plan: SweepPlan) -> dict[str, Any]:
    """sweep.json: the request as resolved."""
    return {
        "scenarios": list(plan.scenarios), "scenario_files": plan.sources, "strategies": list(plan.strategies),
        "seeds": list(plan.seeds), "replicas": plan.replicas,
        "shadows": {name: ev.shadows for name, ev in plan.evaluation.items()},
        "split": {name: ev.split for name, ev in plan.evaluation.items()}, "executor": req.executor,
        "address": req.address,
        "cpus_per_trial": req.cpus_per_trial, "gpus_per_trial": req.gpus_per_trial, "retries": req.retries,
        "device": req.device, "threads": req.threads, "trials": len(plan.trials),
        **({"grid": {"set": list(req.grid), **plan.grid.record()}} if plan.grid else {}),
        **({"test_fail_hook": req.fail_trials} if req.fail_trials else {}),
        "fingerprints": {t.id: t.fingerprint for t in plan.trials},
    }


_COMPARED = (("scenarios", "scenarios"), ("strategies", "--strategies"), ("seeds", "--seeds"),
             ("replicas", "--replicas"), ("shadows", "--shadows"), ("split", "split"), ("grid", "--set"),
             ("device", "--device"), ("threads", "--cpus-per-trial"))
"""What makes a sweep's tables (sweep.json key, the argument that sets it); executor, address, retries and
GPUs per trial may change between a run and its resume."""


def check_same_request(new: dict[str, Any], old: dict[str, Any], where: Path) -> None:
    """``--resume``: the request recorded in ``where`` (sweep.json) decides; the first difference is an error.

    Keys an older sweep.json lacks are not compared. Last come the trials' fingerprints: the same arguments
    with an edited scenario file or preset (or another ``--relearn-fraction``) are another request too."""

    def grid(record: dict[str, Any]) -> list[str]:
        return list(record.get("grid", {}).get("set", []))

    hint = ("its sweep.json decides; give the same arguments, a new --out, or --extend to reuse its finished "
            "trials for the new request and rewrite its tables")
    for key, arg in _COMPARED:
        if key not in old and key != "grid":
            continue
        a, b = (grid(new), grid(old)) if key == "grid" else (new.get(key), old[key])
        if a != b:
            raise ConfigError(f"the request differs from the sweep being resumed: {arg} {_shown(a)}, the sweep has "
                              f"{_shown(b)} ({hint})", file=where)
    theirs = old.get("fingerprints")
    if theirs is None:
        return
    for tid, fp in new["fingerprints"].items():
        if theirs.get(tid) != fp:
            why = "is not in it" if tid not in theirs else "has another resolved config (a scenario file or preset changed)"
            raise ConfigError(f"the request differs from the sweep being resumed: trial {tid} {why} ({hint})",
                              file=where)
    extra = sorted(set(theirs) - set(new["fingerprints"]))
    if extra:
        raise ConfigError(f"the request differs from the sweep being resumed: it lacks trial {extra[0]} ({hint})",
                          file=where)


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


def run_sweep(req: SweepRequest, plan: SweepPlan | None = None) -> SweepResult:
    """Plan, run the unfinished trials with the chosen executor, aggregate; see :mod:`clu.sweeps`."""
    t0 = time.perf_counter()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    plan = plan_sweep(req) if plan is None else plan  # the command line passes the plan it validated
    check_log(req.log)
    out = prepare_sweep_out(req, stamp)
    settings = {"threads": req.threads, "out": str(out), "fail": req.fail_trials, "log": list(req.log),
                "checkpoints": req.checkpoints}
    request = _request_record(req, plan)
    if req.resume:
        try:
            recorded = json.loads((out / "sweep.json").read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read sweep.json ({e}); nothing to compare the request with",
                              file=out / "sweep.json") from None
        check_same_request(request, recorded, out / "sweep.json")
    write_json(out / "sweep.json", request)

    done_before = [t for t in plan.trials if read_done(t.folder(out), t.fingerprint) is not None]
    todo = [t for t in plan.trials if t not in done_before]
    say = (lambda s: print(s, file=sys.stderr, flush=True)) if req.progress else (lambda s: None)
    n_or = sum(t.unit.role != "strategy" for t in plan.trials)
    where = f"Ray at {req.address}" if req.address else ("local Ray" if req.executor == "ray" else "serially")
    reps = f" × {plan.replicas} replicas" if plan.replicas > 1 else ""
    if plan.grid:
        say(f"clu sweep: grid {' × '.join(f'{k} ({len(v)})' for k, v in plan.grid.axes)}: "
            f"{len(plan.scenarios)} scenario(s)")
    say(f"clu sweep: {len(plan.scenarios)} scenario(s) × {len(plan.strategies) - 2} strategy(ies) × "
        f"{len(plan.seeds)} seed(s){reps} + {n_or} oracle/twin/shadow run(s) = {len(plan.trials)} trials, "
        f"{where}; out {out}")
    if done_before:
        say(f"clu sweep: resume: {len(done_before)} of {len(plan.trials)} trials already finished; "
            f"running {len(todo)}")
    progress = Progress(out, todo, req.retries, req.progress)
    ray_tmp = None
    try:
        if todo and req.executor == "serial":
            run_serial(todo, out, settings, req.retries, progress)
        elif todo:
            ray_tmp = run_ray(todo, out, settings, req, stamp, progress)
    except KeyboardInterrupt:
        print(f"clu sweep: interrupted; {len(progress.outcomes)} of {len(todo)} trials ended. Continue with the same "
              f"arguments plus --resume --out {out}", file=sys.stderr)
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
        **{k: v for k, v in request.items() if k != "fingerprints"},
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
        "outputs": {"results": "results.csv", "aggregate": "aggregate.csv", "stats": "stats.csv",
                    "table": "table.md",
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
        print(f"clu sweep: no oracle of their replica for {len(agg['missing_oracle'])} trial(s): their gaps are "
              "missing",
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
    retries, resume, out, device, progress, replicas, shadows, grid: ``("training.epochs=3,15", ...)``).
    """
    return run_sweep(SweepRequest(tuple(scenarios), tuple(strategies), tuple(seeds), **options))
