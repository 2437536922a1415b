"""What a figure draws: per-strategy metric series over the events of one scenario (mean and std per step),
built from a run folder's records (:func:`run_series`) or a sweep's aggregate rows (:func:`sweep_series`)."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from clu.config import ConfigError
from clu.plots.style import is_oracle
from clu.results import ALL, FINAL, TASK_PREFIX, AggregateRow, RunData


@dataclass
class Series:
    """Per-strategy metric series over the events of one scenario: mean (and std) per step."""

    scenario: str
    subtitle: str
    labels: list[str]
    """Strategies, the oracle last."""
    names: dict[str, str]
    """Label → registry name, where known."""
    steps: list[int]
    kinds: dict[int, str]
    mean: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)
    std: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)
    lo: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)
    """Lowest value over the training replicas of a run (run folders only)."""
    hi: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)
    """Highest value over the training replicas of a run (run folders only)."""
    replicas: int = 1
    """Training replicas per strategy (run folders; a sweep's series are over seeds)."""

    def get(self, label: str, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Steps where ``metric`` applies for ``label``, its mean and std there (std 0 when unknown)."""
        m = self.mean.get((label, metric), {})
        s = self.std.get((label, metric), {})
        xs = sorted(m)
        return (
            np.array(xs, dtype=float),
            np.array([m[x] for x in xs], dtype=float),
            np.array([s.get(x, 0.0) for x in xs], dtype=float),
        )

    def spread(self, label: str, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Steps where ``metric`` applies for ``label``, its min and max over the replicas there."""
        lo = self.lo.get((label, metric), {})
        hi = self.hi.get((label, metric), {})
        xs = sorted(lo)
        return np.array(xs, dtype=float), np.array([lo[x] for x in xs]), np.array([hi[x] for x in xs])

    def has(self, metric: str) -> bool:
        return any(self.mean.get((label, metric)) for label in self.labels)

    def tasks(self) -> list[int]:
        found = {int(m[len(TASK_PREFIX):]) for (_, m) in self.mean if re.fullmatch(rf"{TASK_PREFIX}\d+", m)}
        return sorted(found)

    @property
    def oracle(self) -> str | None:
        return next((lab for lab in self.labels if is_oracle(lab, self.names)), None)


def order_labels(labels: Iterable[str], names: Mapping[str, str]) -> list[str]:
    """Distinct labels in first-seen order, the oracle last."""
    labels = list(dict.fromkeys(labels))
    return [lab for lab in labels if not is_oracle(lab, names)] + [lab for lab in labels if is_oracle(lab, names)]


def run_series(run: RunData, folder: Path) -> Series:
    """A run folder's series: the mean (and std, min, max) over its seeds and replicas (``clu run``: one seed)."""
    values: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    kinds: dict[int, str] = {}
    seeds: list[int] = []
    replicas: dict[str, set[object]] = defaultdict(set)
    for res in run.strategies:
        if res.replica != ALL:
            replicas[res.label].add((res.seed, res.replica))
        for rec in res.records:
            seeds.append(res.seed)
            kinds.setdefault(rec.step, rec.kind)
            tasks = {f"{TASK_PREFIX}{t}": v for t, v in rec.per_task.items()}
            for metric, v in (*rec.values.items(), *tasks.items()):
                if v is not None:
                    values[(res.label, metric)][rec.step].append(v)
    if not kinds:
        raise ConfigError("metrics.csv has no per-event rows; nothing to plot", file=folder)
    names = {res.label: res.name for res in run.strategies}
    series = Series(
        scenario=run.scenario or folder.resolve().name,
        subtitle=_seed_text(seeds, run.seed),
        labels=order_labels((res.label for res in run.strategies), names),
        names=names,
        steps=sorted(kinds),
        kinds=kinds,
        replicas=max((len(r) for r in replicas.values()), default=1),
    )
    if series.replicas > 1:
        series.subtitle += f", {series.replicas} replicas"
    for key, by_step in values.items():
        series.mean[key] = {s: float(np.mean(v)) for s, v in by_step.items()}
        series.std[key] = {s: float(np.std(v)) for s, v in by_step.items()}
        series.lo[key] = {s: float(np.min(v)) for s, v in by_step.items()}
        series.hi[key] = {s: float(np.max(v)) for s, v in by_step.items()}
    return series


def _seed_text(seeds: Sequence[int], summary_seed: int | None) -> str:
    uniq = sorted(set(seeds))
    if len(uniq) > 1:
        return f"mean over seeds {', '.join(map(str, uniq))}"
    if uniq:
        return f"seed {uniq[0]}"
    return f"seed {summary_seed}" if summary_seed is not None else ""


def seeds_text(ns: Iterable[int]) -> str:
    """How many seeds a figure's points average (aggregate.csv's ``n``, which varies where a metric applies to
    fewer seeds): ``n = 5 seeds`` when all agree, else the range, ``n = 1–2 seeds``; empty without any."""
    got = sorted({n for n in ns if n})
    if not got:
        return ""
    count = str(got[0]) if len(got) == 1 else f"{got[0]}–{got[-1]}"
    return f"n = {count} seed{'' if got[-1] == 1 else 's'}"


def sweep_series(rows: Sequence[AggregateRow], path: Path) -> dict[str, Series]:
    """A sweep's series, per scenario, from its aggregate rows (mean ± std over seeds)."""
    per: dict[str, dict[str, Any]] = {}
    for r in rows:
        d = per.setdefault(r.scenario, {"labels": [], "kinds": {}, "mean": defaultdict(dict),
                                        "std": defaultdict(dict), "n": set()})
        d["labels"].append(r.strategy)
        if r.step == FINAL:
            continue
        d["kinds"].setdefault(r.step, r.kind)
        if r.mean is not None:
            d["mean"][(r.strategy, r.metric)][r.step] = r.mean
            d["std"][(r.strategy, r.metric)][r.step] = r.std or 0.0
            d["n"].add(r.n)
    out: dict[str, Series] = {}
    for scen, d in per.items():
        if not d["kinds"]:
            continue
        n = seeds_text(d["n"])
        out[scen] = Series(
            scenario=scen,
            subtitle=f"mean ± std, {n}" if n else "mean ± std over seeds",
            labels=order_labels(d["labels"], {}),
            names={},
            steps=sorted(d["kinds"]),
            kinds=d["kinds"],
            mean=dict(d["mean"]),
            std=dict(d["std"]),
        )
    if not out:
        raise ConfigError("aggregate.csv has no per-event rows; nothing to plot", file=path)
    return out
