"""Aggregation: finished trial folders → ``results.csv``, ``aggregate.csv``, ``table.md`` and the plots.

Each strategy trial's per-event values are paired with the oracle trial's values of the same (scenario,
seed, step), and :func:`clu.summary.with_gaps` gives ``<metric>_gap`` and ``AvgGap`` — the very numbers
``clu run`` computes in one process. Trial folders are read through :func:`clu.results.read_run`; the
numbers keep their exact values, so results.csv shows them with the runner's digits.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from clu.plots import plot_sweep
from clu.report import sweep_table
from clu.results import (
    FINAL,
    GAP_COLUMNS,
    GAPPED,
    ORACLE,
    AggregateRow,
    ResultRow,
    Step,
    StrategyResult,
    aggregate_csv,
    read_run,
    results_csv,
    write_atomic,
)
from clu.summary import avg_gap_mean, unlearn_time_vs_oracle, with_gaps
from clu.sweeps.plan import SweepPlan, Trial, read_done, trial_folder

_LEFT_OUT = {*GAP_COLUMNS, "KL"}
"""A trial's own gap rows are empty (it ran without the oracle) and KL needs both models: joined or dropped."""


def read_trial(folder: Path, label: str, seed: int) -> StrategyResult:
    """The records of a finished trial's one strategy (none when it diverged at its first event)."""
    run = read_run(folder)
    return next((s for s in run.strategies if s.label == label), StrategyResult(label, label, seed))


def join_trial(t: Trial, data: StrategyResult, oracle: StrategyResult | None) -> list[ResultRow]:
    """The trial's results rows, with gaps joined from the oracle's rows of the same (scenario, seed, step)."""
    rows: list[ResultRow] = []

    def add(step: Step, kind: str, metric: str, value: float | None) -> None:
        rows.append(ResultRow(t.scenario, t.strategy, t.seed, step, kind, metric, value))

    refs = {(r.step, r.kind): r for r in oracle.records} if oracle is not None else {}
    avg_gaps = []
    for rec in data.records:
        for m, v in rec.values.items():
            if m not in _LEFT_OUT:
                add(rec.step, rec.kind, m, v)
        for task, v in rec.per_task.items():
            add(rec.step, rec.kind, f"acc_task_{task}", v)
        ref = refs.get((rec.step, rec.kind))
        if ref is not None:
            g = with_gaps({m: rec.values.get(m) for m in GAPPED}, {m: ref.values.get(m) for m in GAPPED})
            for m in GAP_COLUMNS:
                add(rec.step, rec.kind, m, g[m])
            avg_gaps.append(g["AvgGap"])
        if rec.time_s is not None:
            add(rec.step, rec.kind, "time_s", rec.time_s)
    for m, v in data.final.items():
        if m != "AvgGap_mean":
            add(FINAL, "run", m, v)
    if oracle is not None:
        add(FINAL, "run", "AvgGap_mean", avg_gap_mean(avg_gaps))
        add(FINAL, "run", "unlearn_time_vs_oracle", unlearn_time_vs_oracle(data.records, oracle.records))
    add(FINAL, "run", "time_s", round(sum(r.time_s for r in data.records if r.time_s is not None), 6))
    return rows


def aggregate_rows(results: Iterable[ResultRow]) -> list[AggregateRow]:
    """results rows → aggregate rows: mean, sample std (None when n < 2) and n over seeds."""
    groups: dict[tuple[str, str, Step, str, str], list[float]] = {}
    for r in results:
        vals = groups.setdefault((r.scenario, r.strategy, r.step, r.kind, r.metric), [])
        if r.value is not None:
            vals.append(r.value)
    out = []
    for key, vals in groups.items():
        arr = np.asarray(vals, dtype=np.float64)
        mean = float(arr.mean()) if len(arr) else None
        std = float(arr.std(ddof=1)) if len(arr) >= 2 else None
        out.append(AggregateRow(*key, mean, std, len(arr)))
    return out


def trial_avg_gap(out: Path, t: Trial) -> float | None:
    """Mean AvgGap over events of a finished strategy trial, when its oracle has finished too."""
    oracle_dir = trial_folder(out, t.scenario, ORACLE, t.seed)
    if read_done(oracle_dir) is None:
        return None
    try:
        rows = join_trial(t, read_trial(t.folder(out), t.strategy, t.seed), read_trial(oracle_dir, ORACLE, t.seed))
    except (OSError, ValueError):  # a ConfigError is a ValueError: the folder is not readable (yet)
        return None
    return next((r.value for r in rows if r.step == FINAL and r.metric == "AvgGap_mean"), None)


def aggregate(out: Path, plan: SweepPlan) -> dict[str, Any]:
    """Read every finished trial of ``plan``; write results.csv, aggregate.csv, table.md and the plots."""
    data: dict[str, StrategyResult] = {}
    dones: dict[str, dict[str, Any]] = {}
    for t in plan.trials:
        done = read_done(t.folder(out), t.fingerprint)
        if done is not None:
            data[t.id] = read_trial(t.folder(out), t.strategy, t.seed)
            dones[t.id] = done
    results: list[ResultRow] = []
    missing_oracle, diverged = [], set()
    order = {(s, lab, seed): i for i, (s, lab, seed) in enumerate(
        (s, lab, seed) for s in plan.scenarios for lab in plan.strategies for seed in plan.seeds)}
    for t in sorted(plan.trials, key=lambda t: order[(t.scenario, t.strategy, t.seed)]):
        if t.id not in data:
            continue
        oracle = data.get(f"{t.scenario}/{ORACLE}/{t.seed}")
        if oracle is None:
            missing_oracle.append(t.id)
        results += join_trial(t, data[t.id], oracle)
        if dones[t.id].get("error"):
            diverged.add((t.scenario, t.strategy))
    write_atomic(out / "results.csv", results_csv(results))
    write_atomic(out / "aggregate.csv", aggregate_csv(aggregate_rows(results)))
    write_atomic(out / "table.md", sweep_table(plan.scenarios, plan.strategies, plan.seeds, results, diverged))
    plots: list[str] = []
    plot_error = None
    if results:
        try:
            plots = [str(p) for p in plot_sweep(out / "aggregate.csv", out / "plots")]
        except Exception as e:  # noqa: BLE001 - a figure must not cost the sweep its tables
            plot_error = f"{type(e).__name__}: {e}"
            print(f"clu sweep: warning: the plots failed: {plot_error}", file=sys.stderr)
    return {"finished": sorted(data), "missing_oracle": missing_oracle, "plots": plots, "plot_error": plot_error,
            "dones": dones}
