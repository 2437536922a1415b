"""Pure functions from a strategy's event records (and the oracle's) to gaps and whole-run figures (DESIGN §8).

``clu run``, ``clu sweep`` and the plots all go through these: the gap to the oracle and ``AvgGap``
(:func:`with_gaps`), their mean over events (:func:`avg_gap_mean`), the unlearn time relative to the oracle
(:func:`unlearn_time_vs_oracle`) and AIA, BWT and forgetting from the accuracy matrix
(:func:`accuracy_summary`). The metric definitions themselves are in :mod:`clu.metrics`.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from clu import metrics as M
from clu.results import GAPPED, EventRecord, clean


def with_gaps(values: Mapping[str, float | None], oracle: Mapping[str, float | None]) -> dict[str, float | None]:
    """``values`` plus ``<metric>_gap`` (absolute difference to the oracle) and ``AvgGap``."""
    gaps = {m: M.gap(values.get(m), oracle.get(m)) for m in GAPPED}
    out = dict(values)
    out.update({f"{m}_gap": g for m, g in gaps.items()})
    out["AvgGap"] = M.avg_gap(gaps)
    return out


def avg_gap_mean(avg_gaps: Iterable[float | None]) -> float | None:
    """``AvgGap_mean``: the mean of the per-event AvgGap values that exist; None when none does."""
    vals = [v for v in (clean(g) for g in avg_gaps) if v is not None]
    return float(np.mean(vals)) if vals else None


def unlearn_time_vs_oracle(records: Sequence[EventRecord], oracle: Sequence[EventRecord]) -> float | None:
    """Wall time of the strategy's unlearn events ÷ the oracle's time at the same events (6 decimals)."""
    oracle_times = {r.step: r.time_s or 0.0 for r in oracle}
    unlearn = [r for r in records if r.kind != "learn" and r.time_s is not None]
    t_u = sum(r.time_s or 0.0 for r in unlearn)
    t_o = sum(oracle_times.get(r.step, 0.0) for r in unlearn)
    return round(t_u / t_o, 6) if unlearn and t_o > 0 else None


def accuracy_summary(records: Sequence[EventRecord]) -> dict[str, float | None]:
    """Average incremental accuracy, BWT and forgetting from the accuracy matrix of the learn events."""
    learn = [r for r in records if "learn" in r.kind]
    ta = [clean(r.values.get("TA")) for r in learn]
    aia = M.average_incremental_accuracy([v for v in ta if v is not None])
    tasks = sorted({t for r in records for t in r.per_task})
    acc = np.full((len(learn), len(tasks)), np.nan)
    for i, r in enumerate(learn):
        for j, t in enumerate(tasks):
            v = r.per_task.get(t)
            acc[i, j] = np.nan if v is None else v
    bwt = M.bwt(acc) if tasks else None
    forgetting = M.forgetting(acc) if tasks else None
    return {"AIA": clean(aia), "BWT": clean(bwt), "Forgetting": clean(forgetting)}


def final_metrics(records: Sequence[EventRecord], oracle: Sequence[EventRecord] = ()) -> dict[str, float | None]:
    """A strategy's whole-run figures: AvgGap_mean, AIA, BWT, Forgetting, unlearn_time_vs_oracle, time_s."""
    return {
        "AvgGap_mean": avg_gap_mean(r.values.get("AvgGap") for r in records),
        **accuracy_summary(records),
        "unlearn_time_vs_oracle": unlearn_time_vs_oracle(records, oracle),
        "time_s": round(sum(r.time_s or 0.0 for r in records), 6),
    }
