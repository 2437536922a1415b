"""The sweep request (validated) and its trial list: one trial per (scenario, strategy, seed), plus one
oracle trial per (scenario, seed). Each trial carries its resolved one-strategy run config as TOML, so a
worker needs no scenario or preset files, and a fingerprint of that config and the thread count, which
tells a finished trial of this very request from a stale one."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from clu.config import ConfigError
from clu.paths import resolve_scenario
from clu.results import ORACLE
from clu.runconfig import Device, RunConfig, check_device, check_setting
from clu.scenario import load_scenario
from clu.strategies import resolve_strategy

Executor = Literal["ray", "serial"]
DONE = "done.json"
"""A trial folder's marker, written last: the trial finished (with this fingerprint)."""
_SAFE_NAME = re.compile(r"[A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class SweepRequest:
    """What ``clu sweep`` (or ``clu.sweep``) was asked."""

    scenarios: tuple[str, ...]
    """Scenario files or names."""
    strategies: tuple[str, ...]
    """Strategy names or preset files (the oracle is added)."""
    seeds: tuple[int, ...] = (0,)
    executor: Executor = "ray"
    address: str | None = None
    """An existing Ray cluster (``auto``, ``HOST:PORT``, ``ray://...``); None starts a local instance."""
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    retries: int = 1
    """Retries of a failing trial before it is reported."""
    resume: bool = False
    """Run only the trials not finished in ``out``."""
    out: Path | None = None
    """The sweep folder (default ``./runs/sweep-<time>``)."""
    device: Device = "cpu"
    progress: bool = True
    """One line per finished trial on stderr."""
    fail_trials: str | None = None
    """Tests only: ``"scenario/strategy/seed[:n],..."`` — these trials raise at their start (every attempt, or
    the first ``n`` attempts only). Passed to the workers with the trials; recorded in sweep.json when set."""

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
        return trial_folder(out, self.scenario, self.strategy, self.seed)

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


def trial_folder(out: Path, scenario: str, strategy: str, seed: int) -> Path:
    return out / "trials" / scenario / strategy / f"seed-{seed}"


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
    """Strategy labels, the oracle first."""
    seeds: tuple[int, ...]
    trials: tuple[Trial, ...]
    """Oracle trials first, then strategy trials; each group by scenario, strategy, seed."""
    sources: dict[str, str] = field(default_factory=dict)
    """Scenario name → the file it came from."""


def local_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _check_name(kind: str, name: str, key: str) -> None:
    if not _SAFE_NAME.fullmatch(name):
        raise ConfigError(f"{kind} name {name!r} must be letters, digits, '.', '_', '+' or '-' (it names a folder)",
                          key=key)


def check_request(req: SweepRequest) -> None:
    """The request's own fields (no files read)."""
    if not req.scenarios:
        raise ConfigError("give at least one scenario", key="scenarios")
    if not req.strategies:
        raise ConfigError("give at least one strategy", key="--strategies")
    if not req.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in req.seeds):
        raise ConfigError(f"seeds must be whole numbers >= 0, got {req.seeds!r}", key="--seeds")
    if req.executor not in get_args(Executor):
        raise ConfigError(f"{req.executor!r} is not allowed; choose ray or serial", key="--executor")
    if not req.cpus_per_trial > 0:
        raise ConfigError(f"must be > 0, got {req.cpus_per_trial}", key="--cpus-per-trial")
    if req.gpus_per_trial < 0:
        raise ConfigError(f"must be >= 0, got {req.gpus_per_trial}", key="--gpus-per-trial")
    if req.retries < 0:
        raise ConfigError(f"must be >= 0, got {req.retries}", key="--retries")
    check_device(req.device, "--device")
    if req.device == "cuda" and req.executor == "ray" and req.gpus_per_trial <= 0:
        raise ConfigError("--device cuda on Ray needs --gpus-per-trial > 0 (a trial sees only the GPUs it asked for)",
                          key="--gpus-per-trial")
    if req.address is not None and req.executor != "ray":
        raise ConfigError("--address needs the ray executor", key="--address")
    if req.executor == "ray" and req.address is None and req.cpus_per_trial > local_cpus():
        raise ConfigError(f"{req.cpus_per_trial} CPUs per trial, but this machine has {local_cpus()}",
                          key="--cpus-per-trial")


def plan_sweep(req: SweepRequest) -> SweepPlan:
    """Resolve and validate scenarios and strategies; the full trial list of the sweep."""
    check_request(req)
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
        raise ConfigError(f"give at least one strategy besides the oracle {ORACLE}", key="--strategies")
    for spec in specs:
        check_setting(choices, spec, "--strategies")

    seeds = tuple(dict.fromkeys(req.seeds))
    trials = []
    for group in (choices[:1], choices[1:]):
        for spec in specs:
            for c in group:
                for seed in seeds:
                    text = RunConfig(spec, (c,), seed, req.device).to_toml(versions=False)
                    fp = hashlib.sha256(f"{text}\nthreads={req.threads}\n".encode()).hexdigest()[:16]
                    trials.append(Trial(spec.name, c.label, c.name, seed, text, fp))
    return SweepPlan(tuple(s.name for s in specs), tuple(c.label for c in choices), seeds, tuple(trials), sources)
