"""Finished trial folders → ``results.csv`` rows, through the same joint post-processing as ``clu run``.

Per (scenario, seed), every finished trial's unit is read back (:func:`clu.results.read_units`: its records
and margins) and the units are joined together (:func:`clu.joint.join`: gaps to the oracle of the same
replica, KL, LiRA against the shadow oracles, KLoM across replicas) — so a sweep gives the very numbers
``clu run`` gives for the same scenario, strategies, seed and replicas. Rows are :func:`clu.results.unit_rows`
(metrics.csv's rows) plus the per-event and whole-run wall times.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from clu.joint import join
from clu.results import ALL, FINAL, ORACLE, ResultRow, Unit, UnitSpec, read_units, unit_rows
from clu.sweeps.plan import SweepPlan, Trial, read_done, trial_folder

_TIME_FINALS = ("unlearn_time_vs_oracle", "time_s")
"""Whole-run figures results.csv has beyond metrics.csv's (wall-clock ones)."""


@dataclass
class Joined:
    """The sweep's joined results."""

    rows: list[ResultRow]
    """results.csv, in order: scenario, label (oracle, twin, strategies), seed, replica (``all`` last)."""
    finished: dict[str, dict[str, Any]]
    """Trial id → its done.json, for every finished trial."""
    missing_oracle: list[str]
    """Finished trials whose replica's oracle did not finish (their gaps are empty)."""


def read_trial(out: Path, t: Trial) -> Unit:
    """The unit of a finished trial, as it measured itself (empty when it diverged at its first event)."""
    return read_units(t.folder(out), [t.unit])[0]


def unit_results(scenario: str, seed: int, unit: Unit) -> list[ResultRow]:
    """A joined unit's results.csv rows: metrics.csv's rows with ``time_s`` after each event's, then the
    whole-run figures (the wall-clock ones included)."""
    times = {} if unit.spec.replica == ALL else {r.step: r.time_s for r in unit.records}
    cells = unit_rows(unit)
    rows: list[ResultRow] = []
    for i, (step, kind, metric, cell) in enumerate(cells):
        rows.append(ResultRow(scenario, unit.spec.label, seed, unit.spec.replica, step, kind, metric,
                              float(cell) if cell else None))
        event_ends = i + 1 == len(cells) or cells[i + 1][0] != step
        t = times.get(step) if step != FINAL else None
        if event_ends and t is not None:
            rows.append(ResultRow(scenario, unit.spec.label, seed, unit.spec.replica, step, kind, "time_s", t))
    if unit.spec.replica != ALL and unit.records:
        rows += [ResultRow(scenario, unit.spec.label, seed, unit.spec.replica, FINAL, "run", m, unit.final.get(m))
                 for m in _TIME_FINALS]
    return rows


def join_group(units: Sequence[Unit], labels: Sequence[str], *, shadows: int, klom_bins: int) -> list[Unit]:
    """:func:`clu.joint.join` of one (scenario, seed)'s units, given in any order: reported labels in the
    order ``labels``, the shadow units last."""
    rank = {lab: i for i, lab in enumerate(labels)}
    ordered = sorted(units, key=lambda u: (rank.get(u.spec.label, len(rank)), u.spec.label, u.spec.replica))
    return join(ordered, shadows=shadows, klom_bins=klom_bins)


def join_sweep(out: Path, plan: SweepPlan) -> Joined:
    """Read every finished trial of ``plan`` and join them per (scenario, seed)."""
    finished: dict[str, dict[str, Any]] = {}
    groups: dict[tuple[str, int], list[Unit]] = {}
    for t in plan.trials:
        done = read_done(t.folder(out), t.fingerprint)
        if done is None:
            continue
        finished[t.id] = done
        groups.setdefault((t.scenario, t.seed), []).append(read_trial(out, t))
    by_key: dict[tuple[str, str, int], list[ResultRow]] = {}
    missing_oracle = []
    for (scenario, seed), units in groups.items():
        ev = plan.evaluation[scenario]
        for u in join_group(units, plan.strategies, shadows=ev.shadows, klom_bins=ev.klom_bins):
            by_key.setdefault((scenario, u.spec.label, seed), []).extend(unit_results(scenario, seed, u))
        oracles = {u.spec.replica for u in units if u.spec.role == "oracle"}
        missing_oracle += [t.id for t in plan.trials if t.scenario == scenario and t.seed == seed
                           and t.id in finished and t.unit.role in ("twin", "strategy")
                           and t.unit.replica not in oracles]
    rows = [r for s in plan.scenarios for lab in plan.strategies for seed in plan.seeds
            for r in by_key.get((s, lab, seed), [])]
    return Joined(rows, finished, missing_oracle)


def trial_avg_gap(out: Path, t: Trial) -> float | None:
    """Mean AvgGap over the events of a finished trial against its replica's oracle, once that has finished
    (the progress line; the attack's figures wait for the aggregation)."""
    oracle_dir = trial_folder(out, t.scenario, ORACLE, t.seed, t.replica)
    if read_done(oracle_dir) is None:
        return None
    try:
        oracle = read_units(oracle_dir, [_oracle_spec(t)])[0]
        mine = read_trial(out, t)
    except (OSError, ValueError):  # a ConfigError is a ValueError: the folder is not readable (yet)
        return None
    joined = join([oracle, mine], shadows=0)
    return next((u.final.get("AvgGap_mean") for u in joined if u.spec == t.unit), None)


def _oracle_spec(t: Trial) -> UnitSpec:
    """The unit of the oracle of ``t``'s replica (same initial weights, its own batch order)."""
    return replace(t.unit, label=ORACLE, name=ORACLE, role="oracle", order_seed=t.unit.init_seed)
