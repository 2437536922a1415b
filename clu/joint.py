"""The joint post-processing of a run's units: every figure that compares one model with others (pure).

A unit measures only its own model (:mod:`clu.driver`); :func:`join` takes the units of one (scenario, seed)
— as ``clu run`` produced them in memory, or as a sweep reads them back from its trial folders — and adds,
per unit and event: KL to the oracle of the same replica (softmax on D_U*), the per-example membership
attack (LiRA) against the unit's shadow oracles, now and just before a request, resurfacing at request events
(:func:`clu.summary.resurfacing`, from the unit's per-request FA), the gaps to the oracle of the same replica
(:func:`clu.summary.with_gaps`; ``Relearn_FA_gap`` among them), ``dAvgGap``; the whole-run figures; and, per reported
label, one cross-replica unit (replica ``all``) with KLoM at the request events and the final event.

Shadows of replica k: the oracles of the other replicas (1, 2, ... skipping k), the first K of them, then
the run's extra shadow units (role ``shadow``) up to K. Shadow units are inputs only: not in the output.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from clu import metrics as M
from clu.margins import EventMargins
from clu.metrics import KLOM_MIN_REPLICAS
from clu.mia import lira_metrics, lira_scores
from clu.results import ALL, EventRecord, Unit, UnitSpec
from clu.summary import d_avg_gap, final_metrics, is_request, request_figures, resurfacing, with_gaps

__all__ = ["KLOM_MIN_REPLICAS", "join", "shadows_of"]

_NO_LIRA = {m: None for m in ("LiRA_AUC", "LiRA_TPR1", "LiRA_TPR5")}


def shadows_of(replica: int, units: Sequence[Unit], shadows: int) -> list[Unit]:
    """The shadow oracles of ``replica``: other replicas' oracles in replica order, then extra shadows."""
    if shadows <= 0:
        return []
    others = sorted((u for u in units if u.spec.role == "oracle" and u.spec.replica != replica),
                    key=lambda u: u.spec.replica)
    extra = [u for u in units if u.spec.role == "shadow"]
    return (others + extra)[:shadows]


def _lira(phi: np.ndarray | None, n_members: int, shadow_phi: np.ndarray | None,
          suffix: str = "") -> dict[str, float | None]:
    """LiRA_AUC, LiRA_TPR1, LiRA_TPR5 (+ ``suffix``) of ``phi`` (members first) against the shadows' φ."""
    if phi is None or shadow_phi is None or not len(phi) or not n_members:
        return {f"{k}{suffix}": None for k in _NO_LIRA}
    scores = lira_scores(phi, shadow_phi)
    return {f"{k}{suffix}": v for k, v in lira_metrics(scores[:n_members], scores[n_members:]).items()}


def _shadow_phi(shadows: Sequence[Unit], step: int, n: int) -> np.ndarray | None:
    """The shadows' φ at ``step`` stacked (K, n); None when no shadow has that event."""
    rows = [m.phi for m in (_margins_at(u, step) for u in shadows) if m is not None and len(m.phi) == n]
    return np.stack(rows) if rows else None


def _margins_at(unit: Unit, step: int) -> EventMargins | None:
    return next((r.margins for r in unit.records if r.step == step), None)


def _measured(unit: Unit, oracle: Unit | None, shadows: Sequence[Unit]) -> list[EventRecord]:
    """The unit's records with KL, LiRA (now and before) and resurfacing added to its own measurements."""
    out = []
    resurface = resurfacing(unit.records)
    for r in unit.records:
        values = dict(r.values)
        values["FA_resurface"], values["FA_resurface_step"] = resurface.get(r.step, (None, None))
        m, ref = r.margins, (_margins_at(oracle, r.step) if oracle is not None else None)
        kl = None
        if unit.spec.role != "oracle" and m is not None and ref is not None and len(m.probs):
            kl = M.kl_divergence(ref.probs, m.probs)
        values["KL"] = kl
        sh = _shadow_phi(shadows, r.step, len(m.phi)) if m is not None else None
        values.update(_lira(m.phi if m is not None else None, m.n_members if m is not None else 0, sh))
        before = m.before if m is not None and is_request(r.kind) else None
        if before is not None:
            values.update(_lira(before, m.n_members, sh, "_before"))
        else:
            values.update({f"{k}_before": None for k in _NO_LIRA})
        out.append(EventRecord(r.step, r.kind, values, r.per_task, r.time_s, r.margins, r.per_request))
    return out


def _with_gaps(records: list[EventRecord], oracle: list[EventRecord] | None) -> list[EventRecord]:
    refs = {r.step: r.values for r in oracle or ()}
    for r in records:
        r.values = {**with_gaps(r.values, refs.get(r.step, {})), "dAvgGap": None}
    for step, d in d_avg_gap(records).items():
        next(r for r in records if r.step == step).values["dAvgGap"] = d
    return records


def _klom_unit(spec: UnitSpec, units: Sequence[Unit], oracles: Sequence[Unit], replicas: int,
               bins: int) -> Unit:
    """The cross-replica unit of one label: KLoM of its replicas against the oracle's, per request event and
    at the final event (null below :data:`KLOM_MIN_REPLICAS` replicas or with nothing forgotten)."""
    template = max(units, key=lambda u: len(u.records))
    last = template.records[-1].step if template.records else None
    records = []
    for r in template.records:
        if not (is_request(r.kind) or r.step == last):
            continue
        values: dict[str, float | None] = {"KLoM": None, "KLoM_p95": None}
        if replicas >= KLOM_MIN_REPLICAS:
            method = [m for m in (_margins_at(u, r.step) for u in units) if m is not None]
            ref = [m for m in (_margins_at(u, r.step) for u in oracles) if m is not None]
            if method and ref and method[0].n_members:
                n = method[0].n_members
                per_sample = M.klom(np.stack([x.phi[:n] for x in ref]), np.stack([x.phi[:n] for x in method]), bins)
                values.update(M.klom_summary(per_sample))
        records.append(EventRecord(r.step, r.kind, values, {}, None))
    return Unit(replace(spec, replica=ALL), records)


def join(units: Sequence[Unit], *, shadows: int, klom_bins: int = 20) -> list[Unit]:
    """Joined copies of ``units`` (shadow units dropped; inputs unchanged): per label in first-seen order, its
    replicas ascending, then (twin and strategies) its cross-replica ``all`` unit. Units with no oracle of
    their replica get no gaps; with no shadows, LiRA is null."""
    oracles = {u.spec.replica: u for u in units if u.spec.role == "oracle"}
    replicas = len(oracles)
    joined: dict[str, list[Unit]] = {}
    for u in units:
        if u.spec.role == "shadow":
            continue
        oracle = oracles.get(u.spec.replica)
        measured = _measured(u, oracle, shadows_of(u.spec.replica, units, shadows))  # type: ignore[arg-type]
        joined.setdefault(u.spec.label, []).append(Unit(u.spec, measured, u.error))
    by_replica = {k: next(j for j in joined[o.spec.label] if j.spec.replica == k) for k, o in oracles.items()}
    out: list[Unit] = []
    for label, group in joined.items():
        group.sort(key=lambda u: u.spec.replica)  # type: ignore[arg-type, return-value]
        for u in group:
            ref = by_replica.get(u.spec.replica)  # type: ignore[call-overload]
            _with_gaps(u.records, ref.records if ref is not None else None)
        for u in group:
            ref = by_replica.get(u.spec.replica)  # type: ignore[call-overload]
            u.final = {**final_metrics(u.records, ref.records if ref is not None else ()),
                       **request_figures(u.records)}
        out += group
        if group[0].spec.role != "oracle":
            out.append(_klom_unit(group[0].spec, group, list(by_replica.values()), replicas, klom_bins))
    return out
