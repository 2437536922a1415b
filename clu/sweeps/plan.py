"""The sweep request (validated) and its trial list: one trial per **unit** (:func:`clu.runconfig.plan_units`):
per (scenario, seed, replica) the oracle, its twin and each strategy, plus per (scenario, seed) the extra shadow
oracles of the LiRA attack. Each trial carries its resolved run config (its scenario and the one strategy it
trains) as TOML, so a worker needs no scenario or preset files, the unit it runs, and a fingerprint of both
and the thread count, which tells a finished trial of this very request from a stale one. A scenario grid
(``--set``, :mod:`clu.grid`) makes each grid point a scenario of its own, with its resolved scenario (the set
values and the grid point's name) in its trials' configs."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Sequence, get_args

from clu.checkpoints import Policy, check_policy
from clu.cluster import check_cluster_access
from clu.config import ConfigError, read_toml
from clu.grid import Grid, GridScenario, Setting, expand, make_grid, parse_grid
from clu.files import check_out
from clu.paths import default_runs_dir, resolve_scenario
from clu.results import ORACLE, TWIN, UnitSpec, safe_label
from clu.runconfig import Device, RunConfig, check_device, check_setting, plan_units, resolve_in_family
from clu.scenario import ScenarioSpec, load_scenario
from clu.specs import EvaluationSpec
from clu.strategies import StrategyChoice

Executor = Literal["auto", "ray", "serial"]
DONE = "done.json"
"""A trial folder's marker, written last: the trial finished (with this fingerprint)."""
_SAFE_NAME = re.compile(r"[A-Za-z0-9._+=-]+")


@dataclass(frozen=True)
class SweepRequest:
    """What ``clu sweep`` (or ``clu.sweep``) was asked."""

    scenarios: tuple[str, ...]
    """Scenario files or names."""
    strategies: tuple[str, ...]
    """Strategy names or preset files (the oracle is added)."""
    seeds: tuple[int, ...] = (0,)
    executor: Executor = "auto"
    """``ray``, ``serial`` (in this process), or ``auto``: serial below the measured break-even size
    (:func:`clu.sweeps.pack.choose_executor`), else Ray."""
    address: str | None = None
    """An existing Ray cluster (``auto``, ``HOST:PORT``, ``ray://...``); None starts a local instance."""
    insecure: bool = False
    """Allow a non-loopback ``address`` without Ray token authentication (:func:`clu.cluster.check_cluster_access`)."""
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    retries: int = 1
    """Retries of a failing trial before it is reported."""
    resume: bool = False
    """Run only the trials not finished in ``out``; the request must be the one its ``sweep.json`` records (the
    first difference is an error), so a sweep's tables are never rewritten for another request."""
    extend: bool = False
    """Continue ``out`` for a changed request (strategies, seeds, scenarios or configs added or changed): its
    finished trials of the same fingerprint are reused, the others run, and the tables are written for this
    request (``make results`` after a manifest entry changed)."""
    out: Path | None = None
    """The sweep folder (default ``./runs/sweep-<time>``)."""
    device: Device = "cpu"
    progress: bool = True
    """One line per finished trial on stderr."""
    replicas: int = 1
    """Training replicas per (scenario, strategy, seed); each replica of each unit is its own trial."""
    shadows: int | None = None
    """Shadow oracles of the LiRA attack; None takes each scenario's ``[evaluation] shadows``."""
    split: Literal["test", "validation"] | None = None
    """The held-out split TA, MIA and LiRA use (``[evaluation] split``); None takes each scenario's. ``clu tune``
    sets ``validation``. It is part of each trial's resolved config, hence of its fingerprint."""
    grid: tuple[str, ...] = ()
    """Scenario grid: ``--set KEY=V1,V2,...`` arguments (:mod:`clu.grid`); each value of each scenario field
    makes a scenario of its own, several settings their cartesian product."""
    relearn_fraction: float | None = None
    """The relearning attack's part of D_U* (``[evaluation] relearn_fraction``; 0 = off); None takes each
    scenario's. It is part of each trial's resolved config, hence of its fingerprint."""
    log: tuple[str, ...] = ()
    """Trackers every trial publishes to (``clu.trackers.TRACKERS``; files under the trial folder). A Ray trial
    reports its per-event measurements to Tune in any case."""
    checkpoints: Policy = "none"
    """Which per-event checkpoints each trial folder keeps (``--checkpoints``): ``none`` by default, since a
    failed or killed trial is rerun from its start (its folder replaced), so checkpoints serve only the audit
    (``all``) or a look at the final state (``last``). Not part of the results or the fingerprints."""
    fail_trials: str | None = None
    """Tests only: ``"scenario/label/seed[/r<k>][:n],..."`` — these trials raise at their start (every attempt, or
    the first ``n`` attempts only). Passed to the workers with the trials; recorded in sweep.json when set."""

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus_per_trial))


@dataclass(frozen=True)
class Trial:
    """One piece of work: one unit (a model trajectory: a strategy, the oracle, its twin or a shadow oracle)
    of one scenario and seed."""

    scenario: str
    seed: int
    """The scenario seed."""
    unit: UnitSpec
    """What it trains: label, registry name, replica, init and batch-order seeds, role."""
    config_toml: str
    """The resolved run config of its one strategy (scenario, strategy, seed, device; one replica, no
    shadows: the trial measures its own model, the sweep joins the units) as TOML."""
    fingerprint: str

    @property
    def strategy(self) -> str:
        """The label (``strategy`` column of the results)."""
        return self.unit.label

    @property
    def name(self) -> str:
        """The registry name."""
        return self.unit.name

    @property
    def replica(self) -> int:
        return int(self.unit.replica)

    @property
    def id(self) -> str:
        """``scenario/label/seed``, then ``/r<k>`` for replica k > 1."""
        return f"{self.scenario}/{self.strategy}/{self.seed}" + (f"/r{self.replica}" if self.replica != 1 else "")

    @property
    def is_oracle(self) -> bool:
        return self.unit.role == "oracle"

    def folder(self, out: Path) -> Path:
        return trial_folder(out, self.scenario, self.strategy, self.seed, self.replica)

    def spec(self, out: Path) -> dict[str, Any]:
        """The plain-dict form a worker receives."""
        return {
            "id": self.id,
            "scenario": self.scenario,
            "strategy": self.strategy,
            "seed": self.seed,
            "unit": asdict(self.unit),
            "config_toml": self.config_toml,
            "fingerprint": self.fingerprint,
            "dir": str(self.folder(out)),
        }


def trial_folder(out: Path, scenario: str, label: str, seed: int, replica: int = 1) -> Path:
    """``OUT/trials/<scenario>/<safe label>/seed-<n>``, with ``-r<k>`` for replica k > 1."""
    return out / "trials" / scenario / safe_label(label) / (f"seed-{seed}" + (f"-r{replica}" if replica != 1 else ""))


def read_done(folder: Path, fingerprint: str | None = None) -> dict[str, Any] | None:
    """The trial's ``done.json`` when present, readable and (if given) of the same fingerprint."""
    try:
        done = json.loads((folder / DONE).read_text())
    except (OSError, ValueError):
        return None
    if fingerprint is not None and done.get("fingerprint") != fingerprint:
        return None
    return done


@dataclass(frozen=True)
class SweepPlan:
    scenarios: tuple[str, ...]
    """Scenario names, in the order given."""
    strategies: tuple[str, ...]
    """Reported labels in run order: the oracle, its twin, then the strategies (shadows are not reported)."""
    seeds: tuple[int, ...]
    trials: tuple[Trial, ...]
    """Oracle and shadow-oracle trials first, then twin and strategy trials; each group by scenario, label,
    seed, replica."""
    sources: dict[str, str] = field(default_factory=dict)
    """Scenario name → the file it came from."""
    replicas: int = 1
    evaluation: dict[str, EvaluationSpec] = field(default_factory=dict)
    """Scenario name → its evaluation settings, ``shadows`` and ``split`` resolved (the request's or the
    scenario's)."""
    grid: Grid | None = None
    """The scenario grid (``--set``): its axes and which base scenario and values each grid point has."""


def local_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _check_name(kind: str, name: str, key: str) -> None:
    if not _SAFE_NAME.fullmatch(name):
        raise ConfigError(f"{kind} name {name!r} must be letters, digits, '.', '_', '+', '=' or '-' "
                          "(it names a folder)", key=key)


def check_request(req: SweepRequest) -> None:
    """The request's own fields (no files read)."""
    if not req.scenarios:
        raise ConfigError("give at least one scenario", key="scenarios")
    if not req.strategies:
        raise ConfigError("give at least one strategy", key="--strategies")
    if not req.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in req.seeds):
        raise ConfigError(f"seeds must be whole numbers >= 0, got {req.seeds!r}", key="--seeds")
    if req.executor not in get_args(Executor):
        raise ConfigError(f"{req.executor!r} is not allowed; choose auto, ray or serial", key="--executor")
    if not req.cpus_per_trial > 0:
        raise ConfigError(f"must be > 0, got {req.cpus_per_trial}", key="--cpus-per-trial")
    if req.gpus_per_trial < 0:
        raise ConfigError(f"must be >= 0, got {req.gpus_per_trial}", key="--gpus-per-trial")
    if isinstance(req.replicas, bool) or not isinstance(req.replicas, int) or req.replicas < 1:
        raise ConfigError(f"must be a whole number >= 1, got {req.replicas!r}", key="--replicas")
    if req.shadows is not None and (isinstance(req.shadows, bool) or not isinstance(req.shadows, int)
                                    or req.shadows < 0):
        raise ConfigError(f"must be a whole number >= 0, got {req.shadows!r}", key="--shadows")
    if req.split is not None and req.split not in ("test", "validation"):
        raise ConfigError(f"{req.split!r} is not allowed; choose test or validation", key="split")
    if isinstance(req.grid, str) or not all(isinstance(g, str) for g in req.grid):
        raise ConfigError(f"give the grid as a sequence of 'KEY=V1,V2' texts, got {req.grid!r}", key="--set")
    if req.relearn_fraction is not None and (isinstance(req.relearn_fraction, bool)
                                             or not isinstance(req.relearn_fraction, (int, float))
                                             or not 0 <= req.relearn_fraction < 1):
        raise ConfigError(f"must be in [0, 1) (0 = no relearning attack), got {req.relearn_fraction!r}",
                          key="--relearn-fraction")
    if req.retries < 0:
        raise ConfigError(f"must be >= 0, got {req.retries}", key="--retries")
    check_policy(req.checkpoints)
    if req.resume and req.extend:
        raise ConfigError("give --resume (the same request) or --extend (a changed one), not both", key="--extend")
    check_device(req.device, "--device")
    if req.device == "cuda" and req.executor == "ray" and req.gpus_per_trial <= 0:
        raise ConfigError("--device cuda on Ray needs --gpus-per-trial > 0 (a trial sees only the GPUs it asked for)",
                          key="--gpus-per-trial")
    if req.address is not None and req.executor == "serial":
        raise ConfigError("--address needs the ray executor", key="--address")
    if req.executor != "serial" and req.address is None and req.cpus_per_trial > local_cpus():
        raise ConfigError(f"{req.cpus_per_trial} CPUs per trial, but this machine has {local_cpus()}",
                          key="--cpus-per-trial")


def check_sweep_out(req: SweepRequest, stamp: str) -> Path:
    """The sweep folder as an absolute path, checked without writing: new (or empty) and writable, or, for
    ``--resume``/``--extend``, an existing sweep folder (one with sweep.json)."""
    flag = "--extend" if req.extend else "--resume"
    if req.out is None:
        if req.resume or req.extend:
            raise ConfigError(f"{flag} continues a sweep folder: give it with --out", key=flag)
        out = default_runs_dir() / f"sweep-{stamp}"
    else:
        out = Path(req.out)
    out = out.expanduser().resolve()
    if req.resume or req.extend:
        if out.exists() and not out.is_dir():
            raise ConfigError("--out exists and is not a folder", file=out)
        if not out.is_dir():
            raise ConfigError(f"nothing to {flag[2:]}: no such folder", file=out)
        if not (out / "sweep.json").is_file():
            raise ConfigError(f"nothing to {flag[2:]}: no sweep.json in this folder (not a sweep folder)", file=out)
    check_out(out, resume=req.resume or req.extend)
    return out


def plan_sweep(req: SweepRequest) -> SweepPlan:
    """Resolve and validate scenarios and strategies; the full trial list of the sweep."""
    check_request(req)
    check_cluster_access(req.address, req.insecure)  # the API is guarded like the command line
    settings = parse_grid(req.grid)
    specs, sources = [], {}
    scenarios, points = _scenarios(req.scenarios, settings)
    for path, spec in scenarios:
        if req.split is not None:  # in the trials' resolved configs, so in their fingerprints
            spec = replace(spec, evaluation=replace(spec.evaluation, split=req.split))
        if req.relearn_fraction is not None:
            spec = replace(spec, evaluation=replace(spec.evaluation, relearn_fraction=float(req.relearn_fraction)))
        _check_name("scenario", spec.name, "scenarios")
        if spec.name in sources:
            raise ConfigError(f"two scenario files are both named {spec.name!r} ({sources[spec.name]} and {path}); "
                              "rename one (name = ...)", file=path, key="name")
        sources[spec.name] = str(path.resolve())
        specs.append(spec)
    by_scenario = {spec.name: _choices(req.strategies, spec) for spec in specs}
    choices = next(iter(by_scenario.values()))
    for spec in specs:
        labels = [c.label for c in by_scenario[spec.name]]
        if labels != [c.label for c in choices]:
            raise ConfigError(f"the strategies resolve to other labels in {spec.name} ({', '.join(labels)}) than in "
                              f"{specs[0].name} ({', '.join(c.label for c in choices)}); give each preset one label",
                              key="--strategies")

    seeds = tuple(dict.fromkeys(req.seeds))
    trials: list[Trial] = []
    evaluation: dict[str, EvaluationSpec] = {}
    for spec in specs:
        k = spec.evaluation.shadows if req.shadows is None else req.shadows
        evaluation[spec.name] = replace(spec.evaluation, shadows=k)
        for seed in seeds:
            mine = by_scenario[spec.name]
            config = RunConfig(spec, tuple(mine), seed, req.device, req.replicas, k)
            by_label = {c.label: c for c in mine}
            for unit in plan_units(config):
                choice = by_label[unit.label] if unit.role == "strategy" else mine[0]
                trials.append(_trial(spec, choice, seed, unit, req))
    folders: dict[Path, str] = {}
    for t in trials:
        other = folders.setdefault(t.folder(Path()), t.strategy)
        if other != t.strategy:
            raise ConfigError(f"strategy {other!r} and {t.strategy!r} would share the trial folder "
                              f"{safe_label(t.strategy)!r}; give the strategy another label", key="--strategies")
    group = {"oracle": 0, "shadow": 0, "twin": 1, "strategy": 1}
    labels = list(dict.fromkeys(t.strategy for t in trials))
    order = {(s.name, lab): i for i, (s, lab) in enumerate((s, lab) for s in specs for lab in labels)}
    trials.sort(key=lambda t: (group[t.unit.role], order[(t.scenario, t.strategy)], t.seed, t.replica))
    reported = (choices[0].label, TWIN, *(c.label for c in choices[1:]))
    grid = make_grid(settings, points) if settings else None
    return SweepPlan(tuple(s.name for s in specs), reported, seeds, tuple(trials), sources, req.replicas, evaluation,
                     grid)


def _choices(strategies: Sequence[str], spec: ScenarioSpec) -> list[StrategyChoice]:
    """The oracle, then the strategies, resolved in the scenario's preset family (``[training] presets``), as
    ``clu run`` resolves them (:func:`clu.runconfig.resolve_in_family`)."""
    family = spec.training.presets
    choices = [resolve_in_family(ORACLE, family)]
    for s in strategies:
        c = resolve_in_family(s, family)
        if c.name == ORACLE and c.label == ORACLE:
            continue  # the oracle always runs, once per (scenario, seed)
        _check_name("strategy", c.label, "--strategies")
        if c.label in {x.label for x in choices}:
            raise ConfigError(f"strategy {c.label!r} given twice; give each a distinct label", key="--strategies")
        choices.append(c)
    if len(choices) == 1:
        raise ConfigError(f"give at least one strategy besides the oracle {ORACLE}", key="--strategies")
    check_setting(choices, spec, "--strategies")
    return choices


def _scenarios(names: Sequence[str], settings: Sequence[Setting]
               ) -> tuple[list[tuple[Path, ScenarioSpec]], list[GridScenario]]:
    """(file, scenario) of every scenario of the sweep — the files given, or with a grid each file's grid
    points — and the grid points."""
    out: list[tuple[Path, ScenarioSpec]] = []
    points: list[GridScenario] = []
    for s in dict.fromkeys(names):
        path = resolve_scenario(s)
        if not settings:
            out.append((path, load_scenario(path)))
            continue
        grid = expand(read_toml(path), str(path), settings)
        points += grid
        out += [(path, g.spec) for g in grid]
    return out, points


def _trial(spec: ScenarioSpec, choice: StrategyChoice, seed: int, unit: UnitSpec, req: SweepRequest) -> Trial:
    """The trial of one unit: its one-strategy config (one replica, no shadows) and its fingerprint."""
    text = RunConfig(spec, (choice,), seed, req.device, 1, 0).full_toml()  # fingerprints stay stable
    ident = json.dumps(asdict(unit), sort_keys=True)
    fp = hashlib.sha256(f"{text}\nunit={ident}\nthreads={req.threads}\n".encode()).hexdigest()[:16]
    return Trial(spec.name, seed, unit, text, fp)
