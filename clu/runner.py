"""The run loop: the oracle, then every strategy of a run config, over the events; checkpoints, divergence.

The oracle (``retrain``) always runs first, once per (scenario, seed); every other strategy's gaps and KL
are measured against its records as they are produced. A strategy that diverges stops at that event with a
message; the rows written so far stay and the other strategies go on. The result files are written through
:mod:`clu.results` after every strategy, so an interrupted run keeps what it has.
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

from clu.config import ConfigError
from clu.data import load_dataset
from clu.driver import build_strategy, run_events
from clu.events import steps as group_steps
from clu.events import to_json
from clu.models import resolve_device
from clu.paths import default_runs_dir
from clu.plots import plot_run
from clu.results import (
    ORACLE,
    EventRecord,
    StrategyResult,
    check_out,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    prepare_out,
    save_checkpoint,
    write_atomic,
    write_run,
)
from clu.runconfig import RunConfig
from clu.scenario import events_for
from clu.strategies import DivergenceError
from clu.strategies.base import CLUStrategy
from clu.summary import final_metrics, with_gaps


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
    checkpoints: bool = True,
    make_plots: bool = True,
    threads: int = 1,
) -> Summary:
    """Run every strategy of ``config``; write the results folder; return the summary.

    ``out`` defaults to ``./runs/<scenario>-<time>``. ``threads``: torch CPU threads. One is the default: the
    models here are small, and a second thread costs more in synchronisation than it gains (and slows down
    badly when the other core is busy).
    """
    _check_run_args(config, out, resume, threads)
    torch.set_num_threads(max(1, threads))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(out) if out is not None else default_runs_dir() / f"{config.scenario.name}-{stamp}"
    check_out(out, resume=resume)
    device = resolve_device(config.device)
    data = load_dataset(config.scenario.data)
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

    results: list[StrategyResult] = []
    oracle_records: list[EventRecord] | None = None
    for choice in config.strategies:
        res = StrategyResult(choice.label, choice.name, config.seed)
        results.append(res)
        strategy = build_strategy(choice, config.scenario, data, config.seed, device, plugins)
        start = 0
        ckpt = latest_checkpoint(out, choice.label) if resume else None
        if ckpt is not None:
            state = load_checkpoint(ckpt)
            strategy.load_state_dict(state["strategy"])
            res.records = [EventRecord.from_state(r) for r in state["records"]]
            res.error = state.get("error")
            start = state["event_index"] + 1
        is_oracle = choice.name == ORACLE and oracle_records is None
        bar = _progress(choice.label, len(steps), start) if progress else None
        try:
            if res.error is None:
                for rec in run_events(strategy, steps, data, seed=config.seed, start=start, oracle=oracle_records):
                    _check_finite(strategy)
                    if is_oracle:
                        rec.values = with_gaps(rec.values, rec.values)
                    res.records.append(rec)
                    if checkpoints:
                        save_checkpoint(out, choice.label, len(res.records) - 1, _ckpt_payload(strategy, res))
                    if bar is not None:
                        bar.update(1)
        except DivergenceError as e:
            step = steps[len(res.records)]
            res.error = f"stopped at step {step.index} ({step.kind}): {e}"
            print(f"clu: {choice.label}: {res.error}", file=sys.stderr)
            if checkpoints and res.records:  # mark the last good checkpoint as final (its state, not the NaNs)
                last = checkpoint_path(out, choice.label, len(res.records) - 1)
                payload = load_checkpoint(last) if last.exists() else _ckpt_payload(strategy, res)
                payload.pop("event_index", None)
                save_checkpoint(out, choice.label, len(res.records) - 1, {**payload, "error": res.error})
        finally:
            if bar is not None:
                bar.close()
        if is_oracle:
            if res.error is not None:
                raise ConfigError(f"the oracle failed: {res.error}", key=ORACLE)
            oracle_records = res.records
        _write(out, config, results, oracle_records)
    summary = _write(out, config, results, oracle_records)
    if make_plots:
        plot_run(out)
    return Summary(out, summary, {r.label: r.error for r in results if r.error})


def _write(out: Path, config: RunConfig, results: list[StrategyResult],
           oracle: Sequence[EventRecord] | None) -> dict[str, Any]:
    for res in results:
        res.final = final_metrics(res.records, oracle or ())
    return write_run(out, config.scenario.name, config.seed, results)


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


def _ckpt_payload(strategy: CLUStrategy, res: StrategyResult) -> dict[str, Any]:
    return {"strategy": strategy.state_dict(), "records": [r.to_state() for r in res.records], "error": res.error}


def _progress(label: str, total: int, start: int) -> tqdm:
    return tqdm(total=total, initial=start, desc=f"{label:<15}", unit="event", leave=True, file=sys.stderr,
                bar_format="{desc} {bar:20} {n_fmt}/{total_fmt} events [{elapsed}]")


__all__ = ["Summary", "run"]
