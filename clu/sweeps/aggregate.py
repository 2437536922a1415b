"""Aggregation: finished trial folders → ``results.csv``, ``aggregate.csv``, ``stats.csv``, ``table.md``, plots.

The trial folders are read and joined per (scenario, seed) by :mod:`clu.sweeps.join` (the same joint
post-processing as ``clu run``: gaps, KL, LiRA, KLoM); the numbers keep their exact values, so results.csv
shows them with the runner's digits. Here they are aggregated over seeds and tabulated.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from clu.plots import plot_sweep_folder
from clu.report import STATS_HEADER, stats_rows, sweep_table
from clu.results import (
    AggregateRow,
    ResultRow,
    Step,
    aggregate_csv,
    csv_text,
    format_value,
    results_csv,
    write_atomic,
)
from clu.stats import ci95
from clu.sweeps.join import join_sweep
from clu.sweeps.plan import SweepPlan


def aggregate_rows(results: Iterable[ResultRow]) -> list[AggregateRow]:
    """results rows → aggregate rows over seeds: mean, sample std and 95 % CI half-width (None when n < 2),
    n = seeds with a value; each seed's replicas are averaged first (a cross-replica ``all`` row is one value)."""
    groups: dict[tuple[str, str, Step, str, str], dict[int, list[float]]] = {}
    for r in results:
        by_seed = groups.setdefault((r.scenario, r.strategy, r.step, r.kind, r.metric), {})
        if r.value is not None:
            by_seed.setdefault(r.seed, []).append(r.value)
    out = []
    for key, by_seed in groups.items():
        arr = np.asarray([np.mean(v) for v in by_seed.values()], dtype=np.float64)
        mean = float(arr.mean()) if len(arr) else None
        std = float(arr.std(ddof=1)) if len(arr) >= 2 else None
        out.append(AggregateRow(*key, mean, std, ci95(arr), len(arr)))
    return out


def stats_csv(scenarios: Sequence[str], strategies: Sequence[str], seeds: Sequence[int],
              results: Sequence[ResultRow]) -> str:
    """stats.csv: the p-values behind the table's marks (:func:`clu.report.stats_rows`)."""
    return csv_text(STATS_HEADER, ((*row[:4], *(format_value(p) for p in row[4:]))
                                   for row in stats_rows(scenarios, strategies, seeds, results)))


def aggregate(out: Path, plan: SweepPlan) -> dict[str, Any]:
    """Read and join every finished trial of ``plan`` (:func:`clu.sweeps.join.join_sweep`); write results.csv,
    aggregate.csv, table.md and the plots (with a scenario grid, its scaling and requests figures too)."""
    joined = join_sweep(out, plan)
    results = joined.rows
    diverged = {(d["scenario"], d["strategy"]) for d in joined.finished.values() if d.get("error")}
    write_atomic(out / "results.csv", results_csv(results))
    write_atomic(out / "aggregate.csv", aggregate_csv(aggregate_rows(results)))
    write_atomic(out / "table.md", sweep_table(plan.scenarios, plan.strategies, plan.seeds, results, diverged,
                                               replicas=plan.replicas))
    write_atomic(out / "stats.csv", stats_csv(plan.scenarios, plan.strategies, plan.seeds, results))
    plots: list[str] = []
    plot_error = None
    if results:
        try:
            # with a grid also its figures: metrics against the grid values, and over the requests
            plots = [str(p) for p in plot_sweep_folder(out, plan.grid, plan.scenarios)]
        except Exception as e:  # noqa: BLE001 - a figure must not cost the sweep its tables
            plot_error = f"{type(e).__name__}: {e}"
            print(f"clu sweep: warning: the plots failed: {plot_error}", file=sys.stderr)
    return {"finished": sorted(joined.finished), "missing_oracle": joined.missing_oracle, "plots": plots,
            "plot_error": plot_error, "dones": joined.finished}
