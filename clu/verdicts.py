"""What a sweep table says per column (DESIGN §8, §13): per-seed values and their marks, from results rows.

A table cell is a method's mean ± 95 % CI over seeds, its replicas averaged within each seed first. The marks
come from paired tests over seeds (:mod:`clu.stats`): **bold** for a leader that beats every other method
(Holm-corrected), ``=`` for the tied leaders otherwise, ``≈`` for a gap not significantly above the twin's
(indistinguishable from exact unlearning). The oracle and its twin are not contenders, and the attack columns
(MIA, LiRA_AUC: the attack's score on each model) name no leader. Pure functions.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import numpy as np

from clu import stats
from clu.results import ALL, FINAL, ORACLE, TWIN, ResultRow

Source = Literal["final", "last", "cross"]


@dataclass(frozen=True)
class Column:
    """A column of the sweep table."""

    key: str
    """The metric (results.csv's name)."""
    header: str
    scale: float
    """Shown values are ``value * scale``."""
    decimals: int
    rule: Literal["min", "max", "target"]
    """Best is the lowest, the highest, or the closest to the oracle's value in the same seed."""
    gap: bool
    """A distance to the oracle: compared with the twin's (the ``≈`` mark)."""
    source: Source
    """``final``: a whole-run figure; ``last``: the run's last event; ``cross``: the cross-replica row of the
    last event that has one."""
    ranked: bool = True
    """Whether a leader is marked (bold / ``=``): not for an attack's score, which describes the attack rather
    than the method (its ``≈`` against the twin still applies)."""


COLUMNS: tuple[Column, ...] = (
    Column("AvgGap_req", "AvgGap_req ↓", 100, 2, "min", True, "final"),
    Column("dAvgGap_mean", "dAvgGap ↓", 100, 2, "min", False, "final"),
    Column("AvgGap_L_req", "AvgGap_L_req ↓", 100, 2, "min", True, "final"),
    Column("TA", "TA % ↑", 100, 1, "max", False, "last"),
    Column("FA", "FA % (→ oracle)", 100, 1, "target", True, "last"),
    Column("FA_test", "FA_test % (→ oracle)", 100, 1, "target", True, "last"),
    Column("MIA", "MIA % (→ oracle)", 100, 1, "target", True, "last", ranked=False),
    Column("LiRA_AUC", "LiRA_AUC % (→ oracle)", 100, 1, "target", True, "last", ranked=False),
    Column("Relearn_FA", "Relearn_FA % (→ oracle)", 100, 1, "target", True, "last"),
    Column("FA_resurface_max", "FA_resurf % (→ oracle)", 100, 1, "target", True, "final"),
    Column("KL", "KL ↓", 1, 3, "min", True, "last"),
    Column("KLoM", "KLoM ↓", 1, 3, "min", True, "cross"),
    Column("AvgGap_mean", "AvgGap ↓", 100, 2, "min", True, "final"),
    Column("time_s", "time s ↓", 1, 2, "min", False, "final"),
)

PerSeed = dict[str, dict[str, np.ndarray]]
"""label → column key → one value per seed (NaN where missing), replicas averaged."""


def unit_finals(rows: Iterable[ResultRow]) -> dict[str, float | None]:
    """One unit's (scenario, label, seed, replica) table entries from its results rows."""
    rows = list(rows)
    last = max((r.step for r in rows if r.step != FINAL), default=None)
    out: dict[str, float | None] = {c.key: None for c in COLUMNS}
    wanted = {c.key: c.source for c in COLUMNS}
    for r in rows:
        source = wanted.get(r.metric)
        if source == "final" and r.step == FINAL or source in ("last", "cross") and r.step == last:
            out[r.metric] = r.value
    return out


def _mean(values: Sequence[float | None]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


def per_seed(rows: Iterable[ResultRow], scenario: str, labels: Sequence[str], seeds: Sequence[int]) -> PerSeed:
    """Per label and column, the value of each seed in ``seeds`` order: the mean over the seed's replicas
    (cross-replica columns from the ``all`` rows); NaN where no replica has it."""
    units: dict[tuple[str, int, object], list[ResultRow]] = defaultdict(list)
    for r in rows:
        if r.scenario == scenario:
            units[(r.strategy, r.seed, r.replica)].append(r)
    finals: dict[tuple[str, int], list[dict[str, float | None]]] = defaultdict(list)
    cross: dict[tuple[str, int], dict[str, float | None]] = {}
    for (label, seed, replica), unit in units.items():
        if replica == ALL:
            cross[(label, seed)] = unit_finals(unit)
        else:
            finals[(label, seed)].append(unit_finals(unit))
    out: PerSeed = {}
    for label in labels:
        out[label] = {}
        for c in COLUMNS:
            if c.source == "cross":
                vals = [_mean([cross.get((label, s), {}).get(c.key)]) for s in seeds]
            else:
                vals = [_mean([f[c.key] for f in finals.get((label, s), [])]) for s in seeds]
            out[label][c.key] = np.asarray(vals, dtype=np.float64)
    return out


@dataclass(frozen=True)
class Verdict:
    """The marks of one column."""

    bold: frozenset[str]
    tied: frozenset[str]
    approx: frozenset[str]
    """Methods whose gap is not significantly above the twin's (``≈``)."""
    comparisons: tuple[stats.Comparison, ...]
    """Method vs method (Holm over rivals), then each method vs the twin (one-sided floor test, rival = the twin,
    ``holm_p`` = ``t_p``: one test per method)."""


def losses(values: PerSeed, column: Column) -> dict[str, np.ndarray]:
    """Per label, the per-seed values the column is judged on: |value − oracle's| for a target column."""
    if column.rule != "target":
        return {lab: v[column.key] for lab, v in values.items()}
    target = values.get(ORACLE, {}).get(column.key)
    if target is None:
        return {}
    return {lab: np.abs(v[column.key] - target) for lab, v in values.items()}


def verdict(values: PerSeed, column: Column) -> Verdict:
    """Bold / tied / ≈ for one column, and the p-values behind them (the oracle and the twin never contend; an
    unranked column has no bold or tied)."""
    judged = losses(values, column)
    contenders = {lab: v for lab, v in judged.items() if lab not in (ORACLE, TWIN) and np.isfinite(v).any()}
    rule = "max" if column.rule == "max" else "min"
    bold, tied = stats.leaders(contenders, rule) if column.ranked else (set(), set())
    comparisons = stats.compare(contenders) if len(contenders) > 1 else []
    approx = set()
    twin = judged.get(TWIN)
    if column.gap and twin is not None and np.isfinite(twin).any():
        for lab, v in contenders.items():
            p = stats.floor_p(v, twin)
            comparisons.append(stats.Comparison(lab, TWIN, p, p, None))
            if p >= stats.ALPHA:
                approx.add(lab)
    return Verdict(frozenset(bold), frozenset(tied), frozenset(approx), tuple(comparisons))


def wilcoxon_note(verdicts: dict[str, Verdict]) -> list[str]:
    """Per column with a leader, the largest Wilcoxon p-value of the leader against its rivals (from 10 seeds)."""
    notes = []
    for c in COLUMNS:
        v = verdicts[c.key]
        leader = next(iter(v.bold), None)
        if leader is None:
            continue
        ps = [x.wilcoxon_p for x in v.comparisons if x.method == leader and x.rival != TWIN]
        if ps and all(p is not None for p in ps):
            notes.append(f"{c.key}: {leader} max p = {max(ps):.3g}")  # type: ignore[type-var]
    return notes
