"""The search: the request, one sweep over the sampled configurations, the objective, tune.json/tune.csv and
the chosen preset."""

from __future__ import annotations

import datetime as dt
import math
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from clu.config import ConfigError, replace_from
from clu.files import csv_text, format_value, write_atomic, write_json
from clu.paths import default_runs_dir, resolve_scenario
from clu.records import FINAL, ResultRow
from clu.runconfig import Device
from clu.scenario import load_scenario
from clu.tune.preset import preset_text, write_preset
from clu.tune.space import SearchSpace, load_space, sample

if TYPE_CHECKING:
    from clu.sweeps.plan import Executor

OBJECTIVE = "AvgGap_req"
OBJECTIVE_DEFINITION = (
    "mean over the tuning scenarios and seeds of the whole-run request-only AvgGap (AvgGap, the mean gap to the "
    "retrain oracle of TA, RA, FA and MIA, averaged over the unlearn-request events), measured on the validation "
    "split (TA on validation samples of retained classes, MIA/LiRA non-members from validation; the test split is "
    "never read); lower is better; a configuration with a failed or diverged trial scores +inf")
REPORT_SEEDS = tuple(range(10))


@dataclass(frozen=True)
class TuneRequest:
    """What ``clu tune`` (or ``clu.tune``) was asked."""

    space: str | Path
    """The search-space file (:mod:`clu.tune.space`), or a shipped space's name (``ugclu``)."""
    scenarios: tuple[str, ...]
    """Tuning scenario files or names."""
    seeds: tuple[int, ...] = (100, 101, 102)
    """Tuning seeds: disjoint from ``report_seeds`` (DESIGN §13)."""
    report_seeds: tuple[int, ...] = REPORT_SEEDS
    """The seeds reported tables use; tuning on any of them is refused."""
    budget: int = 16
    """Configurations tried (configuration 0 = the starting config); the same for every compared method."""
    sampler_seed: int = 0
    """Seed of the sampler that draws configurations 1..budget-1."""
    executor: Executor = "auto"
    """``auto`` (serial below the break-even size, else Ray), ``ray`` or ``serial`` (:class:`SweepRequest`)."""
    address: str | None = None
    """An existing Ray cluster; None starts a local instance."""
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    retries: int = 1
    """Retries of a failing trial before it is reported (and its configuration scores +inf)."""
    shadows: int = 0
    """Shadow oracles of the LiRA attack (their non-members are validation samples too)."""
    out: Path | None = None
    """The tune folder, a sweep folder (default ``./runs/tune-<time>``)."""
    preset: Path | None = None
    """Where the chosen preset goes (default ``OUT/<name>-tuned.toml``)."""
    resume: bool = False
    """Reuse the finished trials in ``out`` (the sweep's resume)."""
    device: Device = "cpu"
    progress: bool = True
    """One line per finished trial on stderr."""


@dataclass
class TuneResult:
    out: Path
    summary: dict[str, Any]
    """The content of tune.json."""
    preset: Path | None
    """The chosen preset; None when no configuration has a finite objective."""
    sweep_exit_code: int

    @property
    def chosen(self) -> int | None:
        return self.summary["chosen"]

    @property
    def exit_code(self) -> int:
        """0 when a preset was written and no trial failed (diverged configurations are a result, not an error)."""
        s = self.summary["sweep"]
        return 0 if self.preset is not None and not s["failed"] and not s["missing"] else 1


def check_tune_request(req: TuneRequest) -> None:
    """The request's fields, and the tuning scenarios' validation split (it must not be empty)."""
    if not req.seeds:
        raise ConfigError("give at least one tuning seed", key="--seeds")
    overlap = sorted(set(req.seeds) & set(req.report_seeds))
    if overlap:
        raise ConfigError(f"tuning seeds {overlap} are also reporting seeds ({_seeds_text(req.report_seeds)}): tune "
                          "on scenario seeds disjoint from the reported ones (DESIGN §13), e.g. --seeds 100-102",
                          key="--seeds")
    if isinstance(req.budget, bool) or not isinstance(req.budget, int) or req.budget < 1:
        raise ConfigError(f"must be a whole number >= 1, got {req.budget!r}", key="--budget")
    if isinstance(req.sampler_seed, bool) or not isinstance(req.sampler_seed, int) or req.sampler_seed < 0:
        raise ConfigError(f"must be a whole number >= 0, got {req.sampler_seed!r}", key="--sampler-seed")
    if req.resume and req.out is None:
        raise ConfigError("--resume continues a tune folder: give it with --out", key="--resume")
    if req.preset is not None and Path(req.preset).is_dir():
        raise ConfigError("is a folder; give the preset file to write", key="--preset", file=req.preset)
    for s in req.scenarios:
        path = resolve_scenario(s)
        if load_scenario(path).data.val_fraction <= 0:
            raise ConfigError("tuning evaluates on the validation split, which val_fraction = 0 leaves empty",
                              key="data.val_fraction", file=path)


def _seeds_text(seeds: Sequence[int]) -> str:
    s = sorted(seeds)
    return f"{s[0]}-{s[-1]}" if s == list(range(s[0], s[-1] + 1)) and len(s) > 1 else ",".join(map(str, s))


def command_line(req: TuneRequest) -> str:
    """The ``clu tune`` command that redoes this search (out, preset, executor and resume left out)."""
    args = ["clu", "tune", str(req.space), "--scenarios", *req.scenarios, "--seeds", _seeds_text(req.seeds),
            "--budget", str(req.budget), "--sampler-seed", str(req.sampler_seed), "--shadows", str(req.shadows)]
    if tuple(req.report_seeds) != REPORT_SEEDS:
        args += ["--report-seeds", _seeds_text(req.report_seeds)]
    if req.cpus_per_trial != 1.0:  # the thread count changes the numbers
        args += ["--cpus-per-trial", f"{req.cpus_per_trial:g}"]
    if req.device != "cpu":
        args += ["--device", req.device]
    return shlex.join(args)


def objectives(rows: Sequence[ResultRow], labels: Sequence[str], scenarios: Sequence[str], seeds: Sequence[int],
               bad: set[str] = frozenset()) -> dict[str, tuple[float, dict[str, float]]]:
    """Label → (objective, scenario → its mean over seeds): the whole-run AvgGap_req of replica 1, averaged over
    every (scenario, seed); +inf for a label in ``bad`` or with any value missing."""
    got = {(r.scenario, r.strategy, r.seed): r.value for r in rows
           if r.metric == OBJECTIVE and r.step == FINAL and r.replica == 1}
    out: dict[str, tuple[float, dict[str, float]]] = {}
    for label in labels:
        values = {sc: [got.get((sc, label, s)) for s in seeds] for sc in scenarios}
        per = {sc: _mean(vs) if label not in bad else math.inf for sc, vs in values.items()}
        out[label] = (_mean([v for vs in values.values() for v in vs]) if label not in bad else math.inf, per)
    return out


def _mean(values: Sequence[float | None]) -> float:
    """The mean; +inf when a value is missing or not finite."""
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return math.inf
    return sum(values) / len(values)  # type: ignore[arg-type]


def choose(values: Sequence[float]) -> int | None:
    """The index of the lowest finite objective (ties: the lower index); None when none is finite."""
    finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
    return min(finite)[1] if finite else None


def _label(trial_id: str) -> str:
    return trial_id.split("/")[1]  # scenario/label/seed[/r<k>]; names and labels hold no '/'


def tune(req: TuneRequest) -> TuneResult:
    """Sample the configurations, run them as one sweep on the tuning streams (validation split), score them,
    write tune.json, tune.csv and the chosen preset; see :mod:`clu.tune`."""
    from clu.results import read_results
    from clu.sweeps.plan import SweepRequest, plan_sweep

    check_tune_request(req)
    space = load_space(req.space)
    configs = sample(space, req.budget, req.sampler_seed)
    start = space.start
    width = max(2, len(str(req.budget - 1)))
    labels = [f"{start.label}-c{i:0{width}d}" for i in range(len(configs))]
    full = [replace_from(start.config, c) for c in configs]
    texts = [preset_text(start.name, cfg, label=lab,
                         header=[f"configuration {i} of a `clu tune` search of {start.label}"])
             for i, (cfg, lab) in enumerate(zip(full, labels))]
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (Path(req.out) if req.out is not None else default_runs_dir() / f"tune-{stamp}").expanduser().resolve()
    command = command_line(req)
    if req.progress:
        print(f"clu tune: {start.label}: {len(configs)} configurations × {len(req.scenarios)} scenario(s) × "
              f"{len(req.seeds)} seed(s) (validation split; objective {OBJECTIVE}); out {out}", file=sys.stderr)

    # the sweep wants an empty folder (or one to resume): the configurations' presets are staged outside it
    # and copied in afterwards; a trial carries its resolved config, never the preset's path
    names = [f"c{i:0{width}d}.toml" for i in range(len(configs))]
    with tempfile.TemporaryDirectory(prefix="clu-tune-") as tmp:
        paths = [Path(tmp) / n for n in names]
        for p, t in zip(paths, texts):
            p.write_text(t)
        sreq = SweepRequest(tuple(req.scenarios), tuple(str(p) for p in paths), tuple(req.seeds),
                            executor=req.executor, address=req.address, cpus_per_trial=req.cpus_per_trial,
                            gpus_per_trial=req.gpus_per_trial, retries=req.retries, resume=req.resume, out=out,
                            device=req.device, progress=req.progress, replicas=1, shadows=req.shadows,
                            split="validation")
        plan = plan_sweep(sreq)  # validated before torch, Avalanche or Ray load
        from clu.sweeps.run import run_sweep

        try:
            result = run_sweep(sreq, plan)
        finally:
            if (out / "sweep.json").is_file():
                for n, t in zip(names, texts):
                    write_atomic(out / "configs" / n, t)

    s = result.summary
    bad_ids = [f["trial"] for f in s["failed"]] + [d["trial"] for d in s["diverged"]] + list(s["missing"])
    bad = {_label(t) for t in bad_ids}
    rows = read_results(out / "results.csv") if (out / "results.csv").is_file() else []
    scenarios = list(s["scenarios"])
    seeds = list(s["seeds"])
    scores = objectives(rows, labels, scenarios, seeds, bad)
    chosen = choose([scores[lab][0] for lab in labels])
    entries = []
    for i, (lab, c) in enumerate(zip(labels, configs)):
        obj, per = scores[lab]
        trials = sorted(t for t in bad_ids if _label(t) == lab)
        entries.append({"index": i, "label": lab, "file": f"configs/{names[i]}", "values": c,
                        "objective": obj if math.isfinite(obj) else None,
                        "per_scenario": {k: (v if math.isfinite(v) else None) for k, v in per.items()},
                        "status": "ok" if math.isfinite(obj) else ("failed or diverged" if trials else "no value"),
                        **({"bad_trials": trials} if trials else {})})
    preset_path = None
    if chosen is not None:
        preset_path = (Path(req.preset) if req.preset is not None
                       else out / f"{start.name.replace('_', '-')}-tuned.toml").expanduser().resolve()
    summary = {
        "space_file": str(space.source.resolve()), "strategy": start.name, "start_label": start.label,
        "space": space.to_dict(), "budget": req.budget, "sampler_seed": req.sampler_seed,
        "scenarios": scenarios, "scenario_files": s["scenario_files"], "seeds": seeds,
        "report_seeds": list(req.report_seeds), "split": "validation", "shadows": req.shadows,
        "objective": {"name": OBJECTIVE, "definition": OBJECTIVE_DEFINITION},
        "configurations": entries, "chosen": chosen, "chosen_label": None if chosen is None else labels[chosen],
        "preset": None if preset_path is None else str(preset_path), "command": command,
        "sweep": {k: s[k] for k in ("failed", "diverged", "missing", "elapsed_s")},
    }
    write_json(out / "tune.json", summary)
    write_atomic(out / "tune.csv", _csv(space, entries, scenarios))
    if chosen is not None and preset_path is not None:
        header = _header(space, req, scenarios, seeds, entries, chosen, command)
        write_preset(preset_path, preset_text(start.name, full[chosen], header=header))
    elif req.progress:
        print("clu tune: no configuration has a finite objective; no preset written", file=sys.stderr)
    return TuneResult(out, summary, preset_path, result.exit_code)


def _csv(space: SearchSpace, entries: Sequence[dict[str, Any]], scenarios: Sequence[str]) -> str:
    header = ["index", "label", *space.names, OBJECTIVE, *(f"{OBJECTIVE}[{sc}]" for sc in scenarios)]
    rows = [[e["index"], e["label"], *(e["values"][n] for n in space.names), format_value(e["objective"]),
             *(format_value(e["per_scenario"][sc]) for sc in scenarios)] for e in entries]
    return csv_text(header, rows)


def _header(space: SearchSpace, req: TuneRequest, scenarios: Sequence[str], seeds: Sequence[int],
            entries: Sequence[dict[str, Any]], chosen: int, command: str) -> list[str]:
    best, first = entries[chosen], entries[0]
    start = "n/a" if first["objective"] is None else f"{first['objective']:.6g}"
    return [
        f"{space.start.label} tuned by `clu tune` (DESIGN §13): configuration {chosen} ({best['label']}) "
        f"of {len(entries)}",
        f"search_space = {space.to_inline()}",
        f"budget = {req.budget} configurations (sampler seed {req.sampler_seed}; "
        "configuration 0 = the starting config)",
        f"tuning_seeds = [{', '.join(map(str, seeds))}] (reported tables use seeds {_seeds_text(req.report_seeds)})",
        f"tuning_scenarios = [{', '.join(f'{chr(34)}{sc}{chr(34)}' for sc in scenarios)}]",
        f"objective = {OBJECTIVE}: {OBJECTIVE_DEFINITION}",
        f"objective_best = {best['objective']:.6g} (configuration {chosen}); "
        f"objective_start = {start} (configuration 0)",
        f"date = {dt.date.today().isoformat()}",
        f"command = {command}",
    ]
