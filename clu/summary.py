"""Pure functions from a strategy's event records (and the oracle's) to gaps and whole-run figures (DESIGN §8).

``clu run``, ``clu sweep`` and the plots all go through these: the gap to the oracle, ``AvgGap`` and
``AvgGap_L`` (:func:`with_gaps`), their mean over events (:func:`avg_gap_mean`), the request-only figures
(:func:`request_figures`, :func:`d_avg_gap`), resurfacing per request (:func:`resurfacing`), the unlearn time
relative to the oracle
(:func:`unlearn_time_vs_oracle`) and AIA, BWT and forgetting from the accuracy matrix
(:func:`accuracy_summary`). The metric definitions themselves are in :mod:`clu.metrics`.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from clu import metrics as M
from clu.results import GAPPED, EventRecord, Step, clean

LIRA = "LiRA_AUC"
RELEARN = "Relearn_FA"


def with_gaps(values: Mapping[str, float | None], oracle: Mapping[str, float | None]) -> dict[str, float | None]:
    """``values`` plus ``<metric>_gap`` (absolute difference to the oracle), ``AvgGap``, ``LiRA_AUC_gap``, ``AvgGap_L``.

    ``LiRA_AUC_gap`` and ``AvgGap_L`` are None unless ``LiRA_AUC`` is present on both sides; so is
    ``Relearn_FA_gap`` for ``Relearn_FA`` (which is not part of either average).
    """
    gaps = {m: M.gap(values.get(m), oracle.get(m)) for m in GAPPED}
    out = dict(values)
    out.update({f"{m}_gap": g for m, g in gaps.items()})
    out["AvgGap"] = M.avg_gap(gaps)
    lira_gap = M.gap(values.get(LIRA), oracle.get(LIRA))
    out[f"{LIRA}_gap"] = lira_gap
    out["AvgGap_L"] = None if lira_gap is None else M.avg_gap({**gaps, LIRA: lira_gap}, M.GAP_METRICS_L)
    out[f"{RELEARN}_gap"] = M.gap(values.get(RELEARN), oracle.get(RELEARN))
    return out


def is_request(kind: str) -> bool:
    """True for an event that carries an unlearn request (``class``, ``learn+class``, ...)."""
    return kind != "learn" and kind != "run"


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in (clean(x) for x in values) if v is not None]
    return float(np.mean(vals)) if vals else None


def d_avg_gap(records: Sequence[EventRecord]) -> dict[Step, float | None]:
    """``dAvgGap`` per request event: AvgGap at the event minus AvgGap at the event before it (None if either
    is missing)."""
    out: dict[Step, float | None] = {}
    for prev, rec in zip([None, *records[:-1]], records):
        if not is_request(rec.kind):
            continue
        now = clean(rec.values.get("AvgGap"))
        before = None if prev is None else clean(prev.values.get("AvgGap"))
        out[rec.step] = None if now is None or before is None else now - before
    return out


def request_figures(records: Sequence[EventRecord]) -> dict[str, float | None]:
    """Whole-run ``AvgGap_req``, ``AvgGap_L_mean``, ``AvgGap_L_req``, ``dAvgGap_mean`` and ``FA_resurface_max`` (the
    highest ``FA_resurface`` of any request; None where nothing applies)."""
    requests = [r for r in records if is_request(r.kind)]
    resurface = [v for v in (clean(r.values.get("FA_resurface")) for r in requests) if v is not None]
    return {
        "AvgGap_req": _mean(r.values.get("AvgGap") for r in requests),
        "AvgGap_L_mean": _mean(r.values.get("AvgGap_L") for r in records),
        "AvgGap_L_req": _mean(r.values.get("AvgGap_L") for r in requests),
        "dAvgGap_mean": _mean(d_avg_gap(records).values()),
        "FA_resurface_max": max(resurface) if resurface else None,
    }


def resurfacing(records: Sequence[EventRecord]) -> dict[Step, tuple[float | None, Step | None]]:
    """Per request event: the highest FA of its request's samples at any later event (``FA_resurface``) and the
    first event where it was reached (``FA_resurface_step``); (None, None) when no later event measures it.

    A request is known by the ids of the ``per_request`` FA a record has and the one before it lacks."""
    out: dict[Step, tuple[float | None, Step | None]] = {}
    for i, rec in enumerate(records):
        if not is_request(rec.kind):
            continue
        earlier = set(records[i - 1].per_request) if i else set()
        new = [k for k in rec.per_request if k not in earlier]
        best: tuple[float | None, Step | None] = (None, None)
        for later in records[i + 1 :]:
            fa = [v for v in (clean(later.per_request.get(k)) for k in new) if v is not None]
            if fa and (best[0] is None or max(fa) > best[0]):
                best = (max(fa), later.step)
        out[rec.step] = best
    return out


def avg_gap_mean(avg_gaps: Iterable[float | None]) -> float | None:
    """``AvgGap_mean``: the mean of the per-event AvgGap values that exist; None when none does."""
    return _mean(avg_gaps)


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
