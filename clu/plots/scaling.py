"""The figures of a scenario-grid sweep (``clu sweep --set``), from its ``aggregate.csv`` and grid alone; every
value is the mean over seeds with a ± 95 % CI band (aggregate.csv's ``ci95``; no band below 2 seeds).

- **scaling** (MUSE's scalability): per base scenario and grid axis, each metric of :data:`SCALING_METRICS`
  against the axis' value — the forget-set size for ``schedule.rules[i].fraction`` or ``count`` — one line per
  strategy. With several axes there is one figure per combination of the other axes' values. A numeric axis
  is drawn to scale (logarithmic when its values span 20× or more), any other in the order given.
  File ``scaling-<base>-<field>[_<other>-<value>...].png``.
- **requests** (sustainability): per grid point, each metric of :data:`REQUEST_METRICS` right after each
  unlearn request against the number of requests so far. File ``requests-<scenario>.png``.

File names keep letters, digits, ``.``, ``_`` and ``-`` (as :func:`clu.plots.plot_sweep`'s do).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

import matplotlib
import numpy as np
from matplotlib.lines import Line2D

from clu.config import ConfigError
from clu.grid import Grid, GridPoint, value_slug
from clu.plots.draw import is_unlearn, new_figure, no_data, pct_axis, save, shared_legend
from clu.plots.series import order_labels, seeds_text
from clu.plots.style import STYLE, Style, is_oracle, strategy_style
from clu.results import FINAL, AggregateRow, read_aggregate

SCALING_METRICS: tuple[tuple[str, str], ...] = (
    ("AvgGap_req", "AvgGap over the requests (%)"),
    ("TA", "TA at the last event (%)"),
    ("FA", "FA at the last event (%)"),
    ("unlearn_time_vs_oracle", "unlearn time ÷ oracle's"),
)
"""(metric, axis label): a whole-run figure (``final`` row) where aggregate.csv has one, else the value at the
scenario's last event."""
REQUEST_METRICS: tuple[tuple[str, str], ...] = (
    ("AvgGap", "AvgGap (%)"),
    ("TA", "TA (%)"),
    ("FA", "FA (%)"),
)
"""(metric, axis label) of the requests figure."""
_RATIOS = {"unlearn_time_vs_oracle"}
"""Metrics drawn as they are; the others are fractions, drawn in %."""


class Stat(NamedTuple):
    mean: float
    ci95: float | None


@dataclass
class Curves:
    """What one figure draws: per metric and strategy, one :class:`Stat` (or None) per x position."""

    title: str
    xlabel: str
    xs: list[Any]
    """The x values (grid values or request numbers), in drawing order."""
    labels: list[str]
    metrics: tuple[tuple[str, str], ...]
    values: dict[tuple[str, str], list[Stat | None]] = field(default_factory=dict)
    """(label, metric) → one entry per x."""
    seeds: set[int] = field(default_factory=set)


def _index(rows: Iterable[AggregateRow]) -> tuple[dict[tuple[str, str, Any, str], Stat], dict[str, list[int]],
                                                  dict[tuple[str, int], str], dict[str, list[str]], set[int]]:
    """(scenario, label, step, metric) → Stat; each scenario's steps and their kinds; its labels; the n's."""
    stats: dict[tuple[str, str, Any, str], Stat] = {}
    steps: dict[str, set[int]] = {}
    kinds: dict[tuple[str, int], str] = {}
    labels: dict[str, list[str]] = {}
    ns: set[int] = set()
    for r in rows:
        labels.setdefault(r.scenario, []).append(r.strategy)
        if r.step != FINAL:
            steps.setdefault(r.scenario, set()).add(int(r.step))
            kinds.setdefault((r.scenario, int(r.step)), r.kind)
        if r.mean is not None and math.isfinite(r.mean):
            stats[(r.scenario, r.strategy, r.step, r.metric)] = Stat(r.mean, r.ci95)
            ns.add(r.n)
    return stats, {s: sorted(v) for s, v in steps.items()}, kinds, labels, ns


def whole_run(stats: dict[tuple[str, str, Any, str], Stat], steps: dict[str, list[int]], scenario: str,
              label: str, metric: str) -> Stat | None:
    """A metric's whole-run figure: its ``final`` row, else its value at the scenario's last event."""
    got = stats.get((scenario, label, FINAL, metric))
    if got is None and steps.get(scenario):
        got = stats.get((scenario, label, steps[scenario][-1], metric))
    return got


def scaling_curves(rows: Sequence[AggregateRow], grid: Grid) -> list[tuple[str, Curves]]:
    """(file stem, curves) of every scaling figure: per base scenario, axis with ≥ 2 values and combination of
    the other axes' values."""
    stats, steps, _, labels, ns = _index(rows)
    out = []
    bases = list(dict.fromkeys(p.base for p in grid.points))
    for base in bases:
        mine = [p for p in grid.points if p.base == base]
        for a, (key, values) in enumerate(grid.axes):
            if len(values) < 2:
                continue
            others = [(k, v) for i, (k, v) in enumerate(grid.axes) if i != a]
            for fixed in itertools.product(*(v for _, v in others)):
                pinned = tuple(zip((k for k, _ in others), fixed))
                row = [_point(mine, key, x, pinned) for x in values]
                order = _order(values)
                xs = [values[i] for i in order]
                points = [row[i] for i in order]
                names = [p.scenario for p in points if p is not None]
                labs = order_labels((lab for n in names for lab in labels.get(n, [])), {})
                field_name = grid.short_name(key)
                where = ", ".join(f"{grid.short_name(k)} = {value_slug(v)}" for k, v in pinned)
                c = Curves(f"{base}: {field_name}" + (f" ({where})" if where else ""), key, xs, labs,
                           SCALING_METRICS, seeds=ns)
                for lab in labs:
                    for metric, _ in SCALING_METRICS:
                        c.values[(lab, metric)] = [None if p is None else whole_run(stats, steps, p.scenario, lab,
                                                                                     metric) for p in points]
                stem = f"scaling-{base}-{field_name}" + "".join(
                    f"_{grid.short_name(k)}-{value_slug(v)}" for k, v in pinned)
                out.append((file_tag(stem), c))
    return out


def _point(points: Sequence[GridPoint], key: str, x: Any, pinned: tuple[tuple[str, Any], ...]) -> GridPoint | None:
    for p in points:
        vals = dict(p.values)
        if vals[key] == x and all(vals[k] == v for k, v in pinned):
            return p
    return None


def _order(values: Sequence[Any]) -> list[int]:
    """Numeric values ascending, anything else as given."""
    if numeric(values):
        return sorted(range(len(values)), key=lambda i: values[i])
    return list(range(len(values)))


def numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def request_curves(rows: Sequence[AggregateRow], scenarios: Sequence[str] | None = None) -> list[tuple[str, Curves]]:
    """(file stem, curves) of the requests figure of every scenario with an unlearn request: each metric right
    after request 1, 2, ... (the events whose kind is not ``learn``)."""
    stats, steps, kinds, labels, ns = _index(rows)
    out = []
    for scen in scenarios if scenarios is not None else list(labels):
        req_steps = [s for s in steps.get(scen, []) if is_unlearn(kinds[(scen, s)])]
        if not req_steps:
            continue
        labs = order_labels(labels[scen], {})
        c = Curves(scen, "requests so far", list(range(1, len(req_steps) + 1)), labs, REQUEST_METRICS, seeds=ns)
        for lab in labs:
            for metric, _ in REQUEST_METRICS:
                c.values[(lab, metric)] = [stats.get((scen, lab, s, metric)) for s in req_steps]
        out.append((file_tag(f"requests-{scen}"), c))
    return out


def file_tag(name: str) -> str:
    """A file-name stem: other characters than letters, digits, ``.``, ``_`` and ``-`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "figure"


def plot_scaling(aggregate_csv: Path | str, grid: Grid, out_dir: Path | str) -> list[Path]:
    """Draw the scaling figures of a grid sweep (its ``aggregate.csv`` and grid) into ``out_dir``; returns
    their paths."""
    rows = read_aggregate(Path(aggregate_csv))
    styles = _styles(rows)
    return [draw(c, styles, Path(out_dir) / f"{stem}.png", "Scaling") for stem, c in scaling_curves(rows, grid)]


def plot_requests(aggregate_csv: Path | str, out_dir: Path | str, scenarios: Sequence[str] | None = None
                  ) -> list[Path]:
    """Draw the requests (sustainability) figure of each scenario (default: all) of a sweep's ``aggregate.csv``
    into ``out_dir``; returns their paths."""
    rows = read_aggregate(Path(aggregate_csv))
    styles = _styles(rows)
    return [draw(c, styles, Path(out_dir) / f"{stem}.png", "Over the requests")
            for stem, c in request_curves(rows, scenarios)]


def _styles(rows: Sequence[AggregateRow]) -> dict[str, Style]:
    return strategy_style(order_labels((r.strategy for r in rows), {}))


def draw(c: Curves, styles: dict[str, Style], path: Path, what: str) -> Path:
    """One figure: a panel per metric, a line per strategy with its ± 95 % CI band."""
    if not c.values:
        raise ConfigError("nothing to plot (no values for these scenarios)", file=path)
    with matplotlib.rc_context(STYLE):
        ncols = 2 if len(c.metrics) == 4 else len(c.metrics)
        nrows = math.ceil(len(c.metrics) / ncols)
        fig = new_figure(1.2 + 2.3 * nrows + 0.17 * math.ceil(len(c.labels) / 5))
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        xpos, ticks, log = _x_positions(c.xs)
        for ax, (metric, ylabel) in zip(axes, c.metrics):
            pct = metric not in _RATIOS
            scale = 100.0 if pct else 1.0
            shown: list[float] = []
            for lab in c.labels:
                vals = c.values.get((lab, metric), [])
                if not any(v is not None for v in vals):
                    continue
                st = styles[lab]
                mean = np.array([np.nan if v is None else scale * v.mean for v in vals])
                half = np.array([np.nan if v is None or v.ci95 is None else scale * v.ci95 for v in vals])
                ax.plot(xpos, mean, color=st.colour, marker=st.marker, ls=st.linestyle, lw=st.linewidth,
                        zorder=st.zorder, mfc=st.colour, mec="white", mew=0.4)
                # a fraction stays in 0-100 %, a time ratio >= 0: the band is clipped to what the metric can take
                lo, hi = np.clip(mean - half, 0, None), np.clip(mean + half, None, 100 if pct else None)
                if np.any(np.isfinite(half)):
                    ax.fill_between(xpos, lo, hi, color=st.colour, lw=0, zorder=1,
                                    alpha=0.07 if is_oracle(lab, {}) else 0.12)
                shown += [v for v in (*mean, *lo, *hi) if math.isfinite(v)]
            if not shown:
                no_data(ax, f"no {metric} values")
            if pct:
                pct_axis(ax, ylabel, shown)
            else:
                ax.set_ylabel(ylabel)
            if log:
                ax.set_xscale("log")
            ax.set_xticks(xpos, ticks)
            ax.minorticks_off()
            ax.set_xlabel(c.xlabel)
        for ax in axes[len(c.metrics):]:
            ax.set_visible(False)
        handles = [Line2D([], [], color=styles[lab].colour, marker=styles[lab].marker, ls=styles[lab].linestyle,
                          lw=styles[lab].linewidth, label=f"{lab} (oracle)" if is_oracle(lab, {}) else lab)
                   for lab in c.labels]
        shared_legend(fig, handles)
        n = seeds_text(c.seeds)
        over = f"mean ± 95 % CI, {n}" if n else "mean ± 95 % CI over seeds"
        fig.suptitle(f"{what} — {c.title}, {over}", fontweight="bold")
        return save(fig, path)


def _x_positions(xs: Sequence[Any]) -> tuple[list[float], list[str], bool]:
    """Where each x goes, its tick text, and whether the axis is logarithmic (numeric, positive, ≥ 20× span)."""
    if numeric(xs):
        vals = [float(x) for x in xs]
        log = min(vals) > 0 and max(vals) / min(vals) >= 20
        return vals, [value_slug(x) for x in xs], log
    return [float(i) for i in range(len(xs))], [value_slug(x) for x in xs], False
