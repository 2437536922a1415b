"""Attached against detached requests (the unified step): the README's ``attached-vs-detached`` table.

A pair is two result folders of the same stream, one with every request riding along the next learn task
(``attach = true``) and one with each request served alone just before that task. A request is compared at
the same point of the stream: the attached event (``learn+<kind>``) against the learn event that follows the
detached request. Per request and method: AvgGap and |TA gap| (mean ± 95 % CI over seeds, in points), the
paired difference attached − detached, the twin's AvgGap at that event (the floor), and the best baseline's
|TA gap| at the attached event. Numbers come from the folders' ``results.csv``; nothing is typed by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from clu.records import ResultRow
from clu.results import TWIN, read_results
from clu.stats import ci95

HEADER = ("stream", "request", "strategy", "AvgGap attached", "AvgGap detached", "attached − detached",
          "twin floor", "verdict", "TA gap attached", "TA gap detached", "best baseline TA gap")
TA_MARGIN = 5.0
"""Points: the attached TA gap may exceed the best baseline's by at most this (the acceptance criterion)."""


@dataclass(frozen=True)
class Matched:
    """One request's compared steps: the attached event and the detached stream's learn event after it."""

    kind: str
    attached_step: int
    detached_step: int


def matched_requests(attached: Sequence[ResultRow], detached: Sequence[ResultRow]) -> list[Matched]:
    """The requests of both streams in order; an error when the streams do not carry the same requests."""

    def kinds(rows: Sequence[ResultRow]) -> dict[int, str]:
        return {int(r.step): r.kind for r in rows if r.step != "final" and r.kind != "run"}

    a, d = kinds(attached), kinds(detached)
    att = [(s, k.split("+", 1)[1]) for s, k in sorted(a.items()) if "+" in k]
    det = [(s, k) for s, k in sorted(d.items()) if k != "learn"]
    if [k for _, k in att] != [k for _, k in det]:
        raise ValueError(f"the streams carry different requests: attached {att}, detached {det}")
    out = []
    for (sa, kind), (sd, _) in zip(att, det):
        if d.get(sd + 1) != "learn":
            raise ValueError(f"detached request at step {sd} is not followed by a learn task")
        out.append(Matched(kind, sa, sd + 1))
    return out


def per_seed(rows: Sequence[ResultRow], strategy: str, step: int, metric: str) -> dict[int, float]:
    """Seed → |value| in points of one strategy's metric at one event (replica 1)."""
    return {r.seed: 100 * abs(r.value) for r in rows
            if r.strategy == strategy and r.step == step and r.metric == metric and str(r.replica) == "1"
            and r.value is not None}


def _pm(values: Sequence[float]) -> str:
    if not len(values):
        return "–"
    half = ci95(values)
    return f"{np.mean(values):.2f}" + ("" if half is None else f" ± {half:.2f}")


def pair_rows(name: str, attached: Sequence[ResultRow], detached: Sequence[ResultRow],
              strategies: Sequence[str], baselines: Sequence[str]) -> list[list[str]]:
    """The table rows of one pair: per request and strategy, then the mean over the pair's requests."""
    rows: list[list[str]] = []
    matched = matched_requests(attached, detached)
    for strategy in strategies:
        diffs_all: list[np.ndarray] = []
        floors_all: list[float] = []
        for i, m in enumerate(matched, 1):
            ga = per_seed(attached, strategy, m.attached_step, "AvgGap")
            gd = per_seed(detached, strategy, m.detached_step, "AvgGap")
            seeds = sorted(set(ga) & set(gd))
            if not seeds:
                continue
            diff = np.array([ga[s] - gd[s] for s in seeds])
            floor = float(np.mean(list(per_seed(attached, TWIN, m.attached_step, "AvgGap").values()) or [np.nan]))
            diffs_all.append(diff)
            floors_all.append(floor)
            ta = per_seed(attached, strategy, m.attached_step, "TA_gap")
            td = per_seed(detached, strategy, m.detached_step, "TA_gap")
            base = {b: np.mean(list(v.values())) for b in baselines
                    if (v := per_seed(attached, b, m.attached_step, "TA_gap"))}
            best = min(base, key=base.__getitem__) if base else None
            ta_ok = best is None or np.mean(list(ta.values())) <= base[best] + TA_MARGIN
            verdict = ("within floor" if diff.mean() <= floor else f"worse by {diff.mean() - floor:.2f}")
            verdict += "" if ta_ok else "; TA collapses"
            rows.append([name, f"{i}: {m.kind}", strategy, _pm([ga[s] for s in seeds]), _pm([gd[s] for s in seeds]),
                         _pm(list(diff)), f"{floor:.2f}", verdict, _pm(list(ta.values())), _pm(list(td.values())),
                         "–" if best is None else f"{base[best]:.2f} ({best})"])
        if diffs_all:
            mean_diff = np.mean(diffs_all, axis=0)
            floor = float(np.mean(floors_all))
            verdict = "within floor" if mean_diff.mean() <= floor else f"worse by {mean_diff.mean() - floor:.2f}"
            rows.append([name, "mean", strategy, "", "", _pm(list(mean_diff)), f"{floor:.2f}", verdict, "", "", ""])
    return rows


def pairs_table(results: Path, pairs: Sequence[tuple[str, str]], strategies: Sequence[str],
                baselines: Sequence[str]) -> list[list[str]]:
    """Rows for every pair whose two folders hold a ``results.csv``."""
    out: list[list[str]] = []
    for att, det in pairs:
        fa, fd = results / att / "results.csv", results / det / "results.csv"
        if fa.is_file() and fd.is_file():
            out += pair_rows(att.removesuffix("-attached"), read_results(fa), read_results(fd), strategies, baselines)
    return out
