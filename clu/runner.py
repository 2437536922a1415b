"""The run loop: every unit of a run config over the events (:func:`plan_units`); checkpoints, divergence.

A unit is one model trajectory: per training replica the oracle (``retrain``), its twin and every strategy,
then the extra shadow oracles of the membership attack. Each unit measures its own model; gaps, KL, LiRA
and KLoM are joined from all units (:func:`clu.joint.join`). A unit that diverges stops at that event with
a message; the rows written so far stay and the others go on (a failed oracle ends the run). The result
files are written through :mod:`clu.results` after every unit, so an interrupted run keeps what it has.
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from avalanche.core import BasePlugin
from tqdm import tqdm

from clu.checkpoints import Policy, check_policy, checkpoint_path, latest_checkpoint, load_checkpoint, save_checkpoint
from clu.config import ConfigError
from clu.data import load_dataset, place
from clu.data.base import Dataset
from clu.driver import build_strategy, run_events
from clu.events import Step, to_json
from clu.events import steps as group_steps
from clu.joint import join
from clu.models import resolve_device
from clu.relearn import Relearn
from clu.paths import default_runs_dir
from clu.plots import plot_run
from clu.results import (
    ORACLE,
    EventRecord,
    Unit,
    UnitSpec,
    check_out,
    prepare_out,
    write_atomic,
    write_margins,
    write_run,
    write_units_manifest,
)
from clu.runconfig import RunConfig, plan_units
from clu.scenario import events_for
from clu.strategies import DivergenceError, StrategyChoice
from clu.strategies.base import CLUStrategy, check_plugins
from clu.trackers import Publisher, check_log, open_trackers


@dataclass
class Summary:
    """What ``clu.run`` returns: the run folder and the summary.json content."""

    out: Path
    data: dict[str, Any]
    errors: dict[str, str]
    """Label → why that strategy stopped early."""


def run(
    config: RunConfig,
    out: Path | str | None = None,
    *,
    resume: bool = False,
    progress: bool = False,
    plugins: Sequence[BasePlugin] = (),
    checkpoints: Policy = "all",
    make_plots: bool = True,
    threads: int = 1,
    units: Sequence[UnitSpec] | None = None,
    log: Sequence[Any] = (),
) -> Summary:
    """Run the units of ``config`` (all of :func:`plan_units` by default; a sweep trial passes its one);
    write the results folder (metrics.csv, timings.csv, summary.json, margins/, checkpoints/); return the summary.

    ``out`` defaults to ``./runs/<scenario>-<time>``. ``checkpoints``: which per-event checkpoints are kept
    (:data:`clu.checkpoints.Policy`; recorded in units.json for the audit). ``threads``: torch CPU threads. One is the default: the
    models here are small, and a second thread costs more in synchronisation than it gains (and slows down
    badly when the other core is busy).
    ``log``: trackers (``"tensorboard"``, ``"csv"``, ``"wandb"`` or :class:`clu.trackers.Tracker` objects) that get
    every per-event measurement as it is known (:class:`clu.trackers.Publisher`).
    """
    _check_run_args(config, out, resume, threads)
    checkpoints = check_policy(checkpoints, "checkpoints")
    log = check_log(log)
    check_plugins(plugins)
    torch.set_num_threads(max(1, threads))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(out) if out is not None else default_runs_dir() / f"{config.scenario.name}-{stamp}"
    check_out(out, resume=resume)
    device = resolve_device(config.device)
    data = load_dataset(config.scenario.data)
    if config.scenario.evaluation.split == "validation":
        data = data.validation_as_test()
    data = place(data, device)  # on the GPU when it fits: batches are sliced there
    events = events_for(config.scenario, config.seed)  # bad input surfaces here, before the folder exists
    steps = group_steps(events)
    stream = "".join(to_json(e) + "\n" for e in events)
    prepare_out(out, resume=resume)
    if resume and (out / "events.jsonl").exists() and (out / "events.jsonl").read_text() != stream:
        raise ConfigError("events.jsonl differs from the stream its config generates; cannot resume", file=out)
    if not resume or not (out / "config.toml").exists():
        write_atomic(out / "config.toml", config.to_toml())
    if not resume or not (out / "events.jsonl").exists():
        write_atomic(out / "events.jsonl", stream)

    plan = list(units) if units is not None else plan_units(config)
    partial = units is not None and plan != plan_units(config)  # a sweep trial: its gaps are joined elsewhere
    write_units_manifest(out, plan, checkpoints)
    done: list[Unit] = []
    publisher = Publisher(open_trackers(log, out, out.name, {"scenario": config.scenario.name, "seed": config.seed}),
                          config.replicas)
    try:
        for i, spec in enumerate(plan):
            done.append(_run_unit(spec, config, out, data, steps, device, plugins,
                                  resume=resume, progress=progress, checkpoints=checkpoints, publisher=publisher))
            if i + 1 < len(plan) and plan[i + 1].replica != spec.replica:
                _write(out, config, done, publisher, partial=partial)  # an interrupted run keeps every finished replica
        summary = _write(out, config, done, publisher, partial=partial)
    finally:
        publisher.close()
    if make_plots:
        plot_run(out)
    return Summary(out, summary, _errors(done))


def _choice(config: RunConfig, spec: UnitSpec) -> StrategyChoice:
    if spec.role != "strategy":
        return config.strategies[0]
    return next(c for c in config.strategies if c.label == spec.label)


def _run_unit(spec: UnitSpec, config: RunConfig, out: Path, data: Dataset, steps: Sequence[Step],
              device: torch.device, plugins: Sequence[BasePlugin], *, resume: bool, progress: bool,
              checkpoints: Policy, publisher: Publisher | None = None) -> Unit:
    """One unit over the events (from its last checkpoint when resuming); its margins file at the end."""
    unit = Unit(spec)
    strategy = build_strategy(_choice(config, spec), config.scenario, data, config.seed, device, plugins,
                              init_seed=spec.init_seed, order_seed=spec.order_seed, amp=config.amp)
    start = 0
    ckpt = latest_checkpoint(out, spec) if resume else None
    if ckpt is not None:
        state = load_checkpoint(ckpt)
        strategy.load_state_dict(state["strategy"])
        unit.records = [EventRecord.from_state(r) for r in state["records"]]
        unit.error = state.get("error")
        start = state["event_index"] + 1
    name = spec.label if config.replicas == 1 or spec.role == "shadow" else f"{spec.label} [{spec.replica}]"
    bar = _progress(name, len(steps), start) if progress else None
    try:
        if unit.error is None:
            for rec in run_events(strategy, steps, data, seed=spec.init_seed, start=start,
                                  relearn=_relearn(config, spec)):
                _check_finite(strategy)
                unit.records.append(rec)
                if publisher is not None:
                    publisher.event(spec, rec)
                if checkpoints != "none":
                    save_checkpoint(out, spec, len(unit.records) - 1, _ckpt_payload(strategy, unit), checkpoints)
                if bar is not None:
                    bar.update(1)
    except DivergenceError as e:
        step = steps[len(unit.records)]
        unit.error = f"stopped at step {step.index} ({step.kind}): {e}"
        print(f"clu: {name}: {unit.error}", file=sys.stderr)
        if checkpoints != "none" and unit.records:  # mark the last good checkpoint as final (its state, not the NaNs)
            last = checkpoint_path(out, spec, len(unit.records) - 1)
            payload = load_checkpoint(last) if last.exists() else _ckpt_payload(strategy, unit)
            payload.pop("event_index", None)
            save_checkpoint(out, spec, len(unit.records) - 1, {**payload, "error": unit.error})
    finally:
        if bar is not None:
            bar.close()
    if spec.role == "oracle" and unit.error is not None:
        raise ConfigError(f"the oracle failed: {unit.error}", key=ORACLE)
    write_margins(out, unit)
    return unit


def _relearn(config: RunConfig, spec: UnitSpec) -> Relearn | None:
    """The relearning attack of a unit: the scenario's, on every reported unit (shadow oracles are inputs of
    the membership attack only)."""
    if spec.role == "shadow":
        return None
    return Relearn.of(config.scenario.evaluation, config.scenario.training.batch_size, config.seed)


def _write(out: Path, config: RunConfig, units: Sequence[Unit], publisher: Publisher | None = None, *,
           partial: bool = False) -> dict[str, Any]:
    joined = join(units, shadows=config.n_shadows, klom_bins=config.scenario.evaluation.klom_bins)
    summary = write_run(out, config.scenario.name, config.seed, joined, partial=partial)
    if publisher is not None:
        publisher.joined(joined)  # gaps and the other joined values, now that they are known
    return summary


def _errors(units: Sequence[Unit]) -> dict[str, str]:
    """Label → why it stopped early (``replica k: ...`` when the run has several replicas)."""
    errors: dict[str, str] = {}
    for u in units:
        if u.error:
            text = u.error if u.spec.replica == 1 else f"replica {u.spec.replica}: {u.error}"
            errors[u.spec.label] = f"{errors[u.spec.label]}; {text}" if u.spec.label in errors else text
    return errors


def _check_run_args(config: Any, out: Any, resume: Any, threads: Any) -> None:
    """``clu.run``'s own arguments: wrong types are a ConfigError (nothing is written)."""
    if not isinstance(config, RunConfig):
        hint = " (build one with clu.resolve_config(scenario, strategies, seed, device))"
        raise ConfigError(f"clu.run expects a RunConfig, got {type(config).__name__}{hint}", key="config")
    if out is not None and not isinstance(out, (str, Path)):
        raise ConfigError(f"expected a folder path (str or Path), got {type(out).__name__}", key="out")
    if not isinstance(resume, bool):
        raise ConfigError(f"expected true or false, got {resume!r}", key="resume")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"expected a whole number >= 1, got {threads!r}", key="threads")


def _check_finite(strategy: CLUStrategy) -> None:
    """A step whose loss was still finite may leave inf/NaN weights: that event diverged too."""
    for name, p in strategy.model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise DivergenceError(f"{strategy.name}: the weights became non-finite ({name}; diverged)")


def _ckpt_payload(strategy: CLUStrategy, unit: Unit) -> dict[str, Any]:
    return {"strategy": strategy.state_dict(), "records": [r.to_state() for r in unit.records], "error": unit.error}


def _progress(label: str, total: int, start: int) -> tqdm:
    return tqdm(total=total, initial=start, desc=f"{label:<15}", unit="event", leave=True, file=sys.stderr,
                bar_format="{desc} {bar:20} {n_fmt}/{total_fmt} events [{elapsed}]")


__all__ = ["Summary", "plan_units", "run"]
