"""The figures (DESIGN §9–§10), drawn from result files alone.

``plot_run(run_dir)`` reads a run folder's ``metrics.csv`` (and ``summary.json`` when present, for the
scenario name and the oracle's label) and writes ``plots/stability_plasticity.png``, ``plots/forgetting.png``
and ``plots/accuracy_matrix.png``. ``plot_sweep(aggregate_csv, out_dir)`` draws the same stability/plasticity
and forgetting figures per scenario from a sweep's ``aggregate.csv``, with ± std bands over seeds.

Figures are sized for a two-column paper (7 in wide, 150 dpi, fonts ≥ 8 pt); a strategy keeps its colour and
marker in every figure (fixed for the registry names, derived from the label otherwise) and the oracle
``retrain`` is always black and dashed. Accuracies are shown in %. Every PNG is written to a temporary file in
the target folder and renamed, so a reader never sees half a figure.

This is the only module that imports matplotlib (``import clu`` does not). It selects the non-interactive Agg
backend and draws through ``matplotlib.figure.Figure`` directly, never through pyplot's global figure
registry, so it is safe in scripts, workers and notebooks alike.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
import tempfile
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # pragma: no branch - never switch a backend pyplot already uses
    matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from clu.config import ConfigError  # noqa: E402

__all__ = ["plot_run", "plot_sweep", "strategy_style", "RUN_PLOTS"]

ORACLE = "retrain"
RUN_PLOTS = ("stability_plasticity.png", "forgetting.png", "accuracy_matrix.png")
METRICS_COLUMNS = ("strategy", "seed", "step", "event_kind", "metric", "value")
AGGREGATE_COLUMNS = ("scenario", "strategy", "step", "event_kind", "metric", "mean", "std", "n")

WIDTH_IN = 7.0
DPI = 150
STYLE: dict[str, Any] = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.3,
    "lines.markersize": 4.5,
    "legend.frameon": False,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
}

# Fixed colour and marker for the registry names (tab10 without black), so that figures of different runs
# and sweeps agree; other labels get a colour derived from their name (stable across runs).
_KNOWN = {
    "ugclu": ("#d62728", "o"),
    "er": ("#1f77b4", "s"),
    "er_ft": ("#ff7f0e", "^"),
    "er_ga": ("#2ca02c", "v"),
    "er_rl": ("#9467bd", "D"),
    "er_salun": ("#8c564b", "P"),
    "er_sfron": ("#e377c2", "X"),
    "naive": ("#7f7f7f", "<"),
    "retrain_stream": ("#bcbd22", ">"),
    "clpu_derpp": ("#17becf", "h"),
}
_EXTRA_COLOURS = (
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354",
    "#756bb1", "#636363", "#9c9ede", "#cedb9c", "#e7ba52", "#e7969c", "#de9ed6", "#6baed6",
)
_EXTRA_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "h", "p", "*")
_KIND_SHORT = {"class": "class", "cross_task": "x-task", "random_sample": "random", "task": "task"}


@dataclass(frozen=True)
class Style:
    colour: str
    marker: str
    linestyle: str = "-"
    linewidth: float = 1.3
    zorder: float = 2.0


def strategy_style(labels: Sequence[str], names: dict[str, str] | None = None) -> dict[str, Style]:
    """Colour, marker and line style of each label: fixed for registry names, the oracle black dashed.

    ``names`` maps a label to its registry strategy name (from summary.json) so that e.g. a label
    ``ugclu-fast`` of strategy ``ugclu`` gets ugclu's colour when no other label already has it.
    """
    names = names or {}
    out: dict[str, Style] = {}
    used: set[str] = set()
    for label in labels:
        if _is_oracle(label, names):
            out[label] = Style("black", "o", "--", 1.6, 3.0)
        elif label in _KNOWN:
            out[label] = Style(*_KNOWN[label])
            used.add(out[label].colour)
    for label in labels:
        if label in out:
            continue
        name = names.get(label, "")
        if name in _KNOWN and _KNOWN[name][0] not in used:
            out[label] = Style(*_KNOWN[name])
        else:
            h = zlib.crc32(label.encode())
            colour = _EXTRA_COLOURS[h % len(_EXTRA_COLOURS)]
            for k in range(len(_EXTRA_COLOURS)):  # resolve collisions within this set of labels
                colour = _EXTRA_COLOURS[(h + k) % len(_EXTRA_COLOURS)]
                if colour not in used:
                    break
            out[label] = Style(colour, _EXTRA_MARKERS[h % len(_EXTRA_MARKERS)])
        used.add(out[label].colour)
    return out


def _is_oracle(label: str, names: dict[str, str]) -> bool:
    return label == ORACLE or names.get(label) == ORACLE


# --- reading result files ------------------------------------------------------------------------


@dataclass
class Series:
    """Per-strategy metric series over the events of one scenario: mean (and std) per step."""

    scenario: str
    subtitle: str
    labels: list[str]  # strategies, oracle last
    names: dict[str, str]
    steps: list[int]
    kinds: dict[int, str]
    mean: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)
    std: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)

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

    def has(self, metric: str) -> bool:
        return any(self.mean.get((label, metric)) for label in self.labels)

    def tasks(self) -> list[int]:
        found = {int(m[len("acc_task_"):]) for (_, m) in self.mean if re.fullmatch(r"acc_task_\d+", m)}
        return sorted(found)

    @property
    def oracle(self) -> str | None:
        return next((lab for lab in self.labels if _is_oracle(lab, self.names)), None)


def _to_float(text: str) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    v = float(text)  # ValueError is turned into ConfigError by the caller
    return v if math.isfinite(v) else None


def _order_labels(labels: Iterable[str], names: dict[str, str]) -> list[str]:
    labels = list(dict.fromkeys(labels))
    return [lab for lab in labels if not _is_oracle(lab, names)] + [lab for lab in labels if _is_oracle(lab, names)]


def _read_csv(path: Path, columns: Sequence[str], what_dir: Path | None = None) -> list[dict[str, str]]:
    owner = what_dir if what_dir is not None else path
    if not path.is_file():
        raise ConfigError(f"no {path.name} here; nothing to plot (expected a results folder)", file=owner)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in columns if c not in header]
            if not header:
                raise ConfigError(f"{path.name} is empty; nothing to plot", file=owner)
            if missing:
                raise ConfigError(
                    f"{path.name} lacks the column(s) {', '.join(missing)}; expected header {','.join(columns)}",
                    file=path,
                )
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"not a readable CSV file ({e})", file=path) from None
    if not rows:
        raise ConfigError(f"{path.name} has a header but no rows; nothing to plot", file=owner)
    return rows


def _read_summary(run_dir: Path) -> dict[str, Any]:
    """summary.json is optional: without it (or when unreadable) titles fall back to the folder name."""
    try:
        data = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _load_run(run_dir: Path) -> Series:
    if not run_dir.is_dir():
        raise ConfigError("no such results folder", file=run_dir)
    path = run_dir / "metrics.csv"
    rows = _read_csv(path, METRICS_COLUMNS, what_dir=run_dir)
    summary = _read_summary(run_dir)
    strategies = summary.get("strategies") if isinstance(summary.get("strategies"), dict) else {}
    names = {str(k): str(v.get("name", k)) for k, v in strategies.items() if isinstance(v, dict)}

    acc: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    kinds: dict[int, str] = {}
    labels: list[str] = []
    seeds: list[str] = []
    for lineno, row in enumerate(rows, start=2):
        step_text = (row["step"] or "").strip()
        if step_text == "final":
            labels.append(row["strategy"])
            continue
        try:
            step = int(step_text)
            value = _to_float(row["value"])
        except (TypeError, ValueError):
            raise ConfigError(
                f"line {lineno}: step must be an integer or 'final' and value a number or empty, "
                f"got step={row['step']!r} value={row['value']!r}",
                file=path,
            ) from None
        labels.append(row["strategy"])
        seeds.append(row["seed"])
        kinds.setdefault(step, row["event_kind"])
        if value is not None:
            acc[(row["strategy"], row["metric"])][step].append(value)
    if not kinds:
        raise ConfigError("metrics.csv has no per-event rows; nothing to plot", file=run_dir)

    series = Series(
        scenario=str(summary.get("scenario") or run_dir.resolve().name),
        subtitle=_seed_text(seeds, summary.get("seed")),
        labels=_order_labels(labels, names),
        names=names,
        steps=sorted(kinds),
        kinds=kinds,
    )
    for key, by_step in acc.items():
        series.mean[key] = {s: float(np.mean(v)) for s, v in by_step.items()}
        series.std[key] = {s: float(np.std(v)) for s, v in by_step.items()}
    return series


def _seed_text(seeds: list[str], summary_seed: Any) -> str:
    uniq = sorted(set(seeds), key=lambda s: (len(s), s))
    if len(uniq) > 1:
        return f"mean over seeds {', '.join(uniq)}"
    if uniq:
        return f"seed {uniq[0]}"
    return f"seed {summary_seed}" if summary_seed is not None else ""


def _load_aggregate(path: Path) -> dict[str, Series]:
    rows = _read_csv(path, AGGREGATE_COLUMNS)
    per: dict[str, dict[str, Any]] = {}
    for lineno, row in enumerate(rows, start=2):
        step_text = (row["step"] or "").strip()
        scen = row["scenario"]
        d = per.setdefault(
            scen, {"labels": [], "kinds": {}, "mean": defaultdict(dict), "std": defaultdict(dict), "n": []}
        )
        d["labels"].append(row["strategy"])
        if step_text == "final":
            continue
        try:
            step = int(step_text)
            mean = _to_float(row["mean"])
            std = _to_float(row["std"])
        except (TypeError, ValueError):
            raise ConfigError(
                f"line {lineno}: step must be an integer or 'final', mean/std numbers or empty, "
                f"got step={row['step']!r} mean={row['mean']!r} std={row['std']!r}",
                file=path,
            ) from None
        d["kinds"].setdefault(step, row["event_kind"])
        if mean is not None:
            d["mean"][(row["strategy"], row["metric"])][step] = mean
            d["std"][(row["strategy"], row["metric"])][step] = std or 0.0
            d["n"].append(row["n"])
    out: dict[str, Series] = {}
    for scen, d in per.items():
        if not d["kinds"]:
            continue
        ns = sorted({n for n in d["n"] if n})
        out[scen] = Series(
            scenario=scen,
            subtitle=f"mean ± std over {'/'.join(ns)} seeds" if ns else "mean ± std over seeds",
            labels=_order_labels(d["labels"], {}),
            names={},
            steps=sorted(d["kinds"]),
            kinds=d["kinds"],
            mean=dict(d["mean"]),
            std=dict(d["std"]),
        )
    if not out:
        raise ConfigError("aggregate.csv has no per-event rows; nothing to plot", file=path)
    return out


# --- drawing helpers --------------------------------------------------------------------------------


def _new_figure(height: float) -> Figure:
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path, after_layout: Callable[[], None] | None = None) -> Path:
    """Lay ``fig`` out once, run ``after_layout`` (placement that needs final positions), freeze the layout and
    render to ``path`` atomically: a temporary file in the same folder, then os.replace.

    Freezing matters for speed: with a layout engine savefig would lay the figure out twice more.
    """
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
        fig.set_layout_engine("none")
    if after_layout is not None:
        after_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=DPI, metadata={"Software": None})
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _is_unlearn(kind: str) -> bool:
    return kind != "learn"


def _kind_label(kind: str) -> str:
    return "+".join(_KIND_SHORT.get(p, p) for p in kind.split("+"))


def _mark_events(
    ax: Any, series: Series, *, panel_width_in: float, steps: list[int] | None = None
) -> tuple[float, bool]:
    """Shade the unlearn events, label them by request kind above the axes, tick every event.

    The labels are horizontal where they fit between neighbouring requests, vertical where only that fits, and
    left out on very dense streams (the legend then names the kinds). Returns the title pad (points) that keeps
    the axes title clear of the labels, and whether they were drawn.
    """
    steps = steps or series.steps
    unlearn = [s for s in steps if _is_unlearn(series.kinds[s])]
    texts = {s: _kind_label(series.kinds[s]) for s in unlearn}
    span = steps[-1] - steps[0] + 1.2
    pt_per_step = panel_width_in * 72 * 0.85 / span
    gap = min((b - a for a, b in zip(unlearn, unlearn[1:])), default=math.inf)
    longest = max((len(t) for t in texts.values()), default=0)
    rotate = longest * 5.2 + 4 > gap * pt_per_step
    label = gap * pt_per_step >= 11  # room for vertical text at 8 pt; else the legend names the kinds
    for step in unlearn:
        ax.axvspan(step - 0.42, step + 0.42, color="0.88", zorder=0, lw=0)
        if label:
            ax.text(step, 1.01, texts[step], transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                    fontsize=8, color="0.35", rotation=90 if rotate else 0)
    _event_ticks(ax, steps)
    ax.set_xlim(steps[0] - 0.6, steps[-1] + 0.6)
    ax.set_xlabel("event (step)")
    if not unlearn or not label:
        return 6.0, False
    return 8.0 + (longest * 5.2 if rotate else 10.0), True


def _unlearn_patch(series: Series, *, with_kinds: bool) -> Patch:
    kinds = sorted({_kind_label(k) for k in series.kinds.values() if _is_unlearn(k)}) if with_kinds else []
    return Patch(color="0.88", label="unlearn request" + (f" ({', '.join(kinds)})" if kinds else ""))


def _event_ticks(ax: Any, steps: list[int]) -> None:
    every = max(1, math.ceil(len(steps) / 16))
    ax.set_xticks(steps[::every])
    ax.grid(False, axis="x")


def _pct_axis(ax: Any, label: str, values: Iterable[float] = ()) -> None:
    """A percentage axis over the data's range, widened to multiples of 10 % and clipped to 0–100 %, so
    that differences between strategies near 100 % stay visible."""
    vals = [v for v in values if math.isfinite(v)]
    lo = max(0.0, math.floor((min(vals) - 2) / 10) * 10) if vals else 0.0
    hi = min(100.0, math.ceil((max(vals) + 2) / 10) * 10) if vals else 100.0
    if hi - lo < 10:
        lo, hi = max(0.0, hi - 10), max(10.0, hi)
    margin = 0.04 * (hi - lo)
    ax.set_ylim(lo - margin, hi + margin)
    ax.set_ylabel(label)


def _band(mean: Any, std: Any) -> tuple[np.ndarray, np.ndarray]:
    """mean ± std in %, clipped to the 0–100 % an accuracy can take."""
    mean, std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
    return np.clip(100 * (mean - std), 0, 100), np.clip(100 * (mean + std), 0, 100)


def _yerr(mean: Any, std: Any) -> np.ndarray:
    """Asymmetric error bar lengths (%) for mean ± std clipped to 0–100 %."""
    lo, hi = _band(mean, std)
    centre = 100 * np.asarray(mean, dtype=float)
    return np.array([np.atleast_1d(centre - lo), np.atleast_1d(hi - centre)])


def _dodge(labels: Sequence[str], oracle: str | None, width: float = 0.3) -> dict[str, float]:
    """Small x offsets so that markers of strategies with equal values stay visible side by side."""
    others = [lab for lab in labels if lab != oracle]
    out = {oracle: 0.0} if oracle else {}
    if len(others) == 1:
        return {**out, others[0]: 0.0}
    for i, lab in enumerate(others):
        out[lab] = -width / 2 + width * i / max(1, len(others) - 1)
    return out


def _legend_handles(series: Series, styles: dict[str, Style]) -> list[Any]:
    handles = []
    for lab in series.labels:
        st = styles[lab]
        text = f"{lab} (oracle)" if lab == series.oracle else lab
        handles.append(Line2D([], [], color=st.colour, marker=st.marker, ls=st.linestyle, lw=st.linewidth,
                              label=text))
    return handles


def _shared_legend(fig: Figure, handles: list[Any]) -> None:
    """One legend for the figure, below the panels: as many columns (≤ 6) as fit the figure's width."""
    renderer = fig.canvas.get_renderer()
    limit = fig.bbox.width * 0.98
    for ncol in range(min(len(handles), 6), 0, -1):
        legend = fig.legend(handles=handles, loc="outside lower center", ncol=ncol, handlelength=2.2,
                            columnspacing=1.2)
        if ncol == 1 or legend.get_window_extent(renderer).width <= limit:
            return
        legend.remove()


def _title(fig: Figure, what: str, series: Series) -> None:
    sub = f", {series.subtitle}" if series.subtitle else ""
    fig.suptitle(f"{what} — {series.scenario}{sub}", fontweight="bold")


def _no_data(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4", fontsize=8, wrap=True)


# --- figures ------------------------------------------------------------------------------------------


def _stability_plasticity(series: Series, styles: dict[str, Style], path: Path, *, bands: bool) -> Path:
    with matplotlib.rc_context(STYLE):
        n = len(series.labels)
        fig = _new_figure(3.2 + 0.17 * math.ceil(n / 5))
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.55, 1]})
        oracle = series.oracle
        dodge = _dodge(series.labels, oracle)
        points: list[tuple[str, float, float, float, float]] = []
        shown_values: list[float] = []
        for lab in series.labels:
            st = styles[lab]
            xo, oa, oa_sd = series.get(lab, "OA")
            xn, na, na_sd = series.get(lab, "NA")
            if len(xo):
                left.plot(xo, 100 * oa, color=st.colour, ls=st.linestyle, lw=st.linewidth, zorder=st.zorder)
                if bands and np.any(oa_sd > 0):
                    left.fill_between(xo, *_band(oa, oa_sd), color=st.colour, alpha=0.1 if lab != oracle else 0.07,
                                      lw=0, zorder=1)
            if len(xn):
                left.errorbar(xn + dodge.get(lab, 0.0), 100 * na, yerr=_yerr(na, na_sd) if bands else None,
                              color=st.colour, marker=st.marker, ls="none", mfc=st.colour, mec="white", mew=0.4,
                              elinewidth=0.8, capsize=0, zorder=st.zorder + 1)
            shown_values += [*(100 * oa), *(100 * na)]
            if bands:
                shown_values += [*_band(oa, oa_sd)[0], *_band(na, na_sd)[0]]
            if len(xo) or len(xn):
                points.append((
                    lab,
                    100 * float(np.mean(na)) if len(na) else math.nan,
                    100 * float(np.mean(oa)) if len(oa) else math.nan,
                    100 * float(np.mean(na_sd)) if len(na_sd) else 0.0,
                    100 * float(np.mean(oa_sd)) if len(oa_sd) else 0.0,
                ))
        pad, labelled = _mark_events(left, series, panel_width_in=WIDTH_IN * 0.55)
        _pct_axis(left, "accuracy (%)", shown_values)
        left.set_title("OA (stability, lines) and NA (plasticity, markers)", pad=pad)
        if not points:
            _no_data(left, "no OA / NA values in this run")

        placed = _scatter(right, points, styles, bands=bands)
        right.set_title("mean NA vs. mean OA" + (" (bars: ± std)" if bands else ""), pad=pad)

        handles = _legend_handles(series, styles)
        handles += [Line2D([], [], color="0.3", ls="-", label="OA (stability)"),
                    Line2D([], [], color="0.3", marker="o", ls="none", label="NA (plasticity)"),
                    _unlearn_patch(series, with_kinds=not labelled)]
        _shared_legend(fig, handles)
        _title(fig, "Stability and plasticity", series)
        return _save(fig, path, after_layout=lambda: _place_labels(right, placed, styles))


def _scatter(ax: Any, points: list[tuple[str, float, float, float, float]], styles: dict[str, Style],
             *, bands: bool) -> list[tuple[str, float, float, float, float]]:
    """The (mean NA, mean OA) points; returns those drawn, to be labelled once the layout is final."""
    pts = [p for p in points if math.isfinite(p[1]) and math.isfinite(p[2])]
    if not pts:
        _no_data(ax, "NA or OA never applies in this run")
        ax.set_xlabel("mean NA (plasticity, %)")
        ax.set_ylabel("mean OA (stability, %)")
        return []
    for lab, x, y, xe, ye in pts:
        st = styles[lab]
        ax.errorbar(x, y, xerr=_yerr(x / 100, xe / 100) if bands and xe > 0 else None,
                    yerr=_yerr(y / 100, ye / 100) if bands and ye > 0 else None,
                    marker=st.marker, color=st.colour, mfc="white" if st.linestyle == "--" else st.colour,
                    mec=st.colour, ms=6, ls="none", elinewidth=0.8, capsize=2, zorder=3)
    xs = np.array([p[1] for p in pts])
    ys = np.array([p[2] for p in pts])
    xe = np.array([p[3] for p in pts]) if bands else np.zeros(len(pts))
    ye = np.array([p[4] for p in pts]) if bands else np.zeros(len(pts))
    ax.set_xlim(*_padded(np.clip(xs - xe, 0, 100), np.clip(xs + xe, 0, 100)))
    ax.set_ylim(*_padded(np.clip(ys - ye, 0, 100), np.clip(ys + ye, 0, 100)))
    ax.set_xlabel("mean NA (plasticity, %)")
    ax.set_ylabel("mean OA (stability, %)")
    return pts


def _padded(lo: np.ndarray, hi: np.ndarray) -> tuple[float, float]:
    """Axis limits around the points with room for their labels, kept near the 0–100 % range."""
    a, b = float(np.min(lo)), float(np.max(hi))
    span = max(b - a, 6.0)
    pad = 0.15 * span + 1.5
    low = a - pad if a < 0 else max(a - pad, -5.0)
    high = b + pad if b > 100 else min(b + pad, 105.0)
    return low, high


def _place_labels(ax: Any, pts: list[tuple[str, float, float, float, float]], styles: dict[str, Style]) -> None:
    """Annotate each point with its label, trying offsets until the text overlaps no other label or point."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()  # the layout is final here (see _save)
    ax_box = ax.get_window_extent(renderer)
    marks = []
    for _, x, y, _, _ in pts:
        px, py = ax.transData.transform((x, y))
        r = 4.0 * fig.dpi / 72
        marks.append(Bbox.from_extents(px - r, py - r, px + r, py + r))
    placed: list[Bbox] = []
    directions = [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1)]
    candidates = [(dx * d, dy * d) for d in (6, 12, 20, 30, 42) for dx, dy in directions]
    for i, (lab, x, y, _, _) in enumerate(pts):
        best = None
        for ox, oy in candidates:
            ann = _annotate(ax, lab, x, y, ox, oy, styles[lab])
            box = ann.get_window_extent(renderer).expanded(1.05, 1.1)
            inside = ax_box.contains(box.x0, box.y0) and ax_box.contains(box.x1, box.y1)
            clash = sum(box.overlaps(b) for b in placed) + sum(box.overlaps(m) for j, m in enumerate(marks) if j != i)
            score = clash + (0 if inside else 10)
            if best is None or score < best[0]:
                if best is not None:
                    best[1].remove()
                best = (score, ann, box, ox, oy)
            else:
                ann.remove()
            if score == 0:
                break
        assert best is not None
        _, ann, box, ox, oy = best
        if math.hypot(ox, oy) > 14:  # far from its point: draw a thin leader line
            ann.remove()
            ann = _annotate(ax, lab, x, y, ox, oy, styles[lab], leader=True)
        placed.append(box)


def _annotate(ax: Any, lab: str, x: float, y: float, ox: float, oy: float, st: Style, leader: bool = False) -> Any:
    ha = "left" if ox > 0 else "right" if ox < 0 else "center"
    va = "bottom" if oy > 0 else "top" if oy < 0 else "center"
    ann = ax.annotate(
        lab, (x, y), xytext=(ox, oy), textcoords="offset points", ha=ha, va=va, fontsize=8,
        color=st.colour if st.colour != "black" else "0.1",
        arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5, "shrinkA": 0, "shrinkB": 3} if leader else None,
        bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.75},
        zorder=4,
    )
    ann.set_in_layout(False)
    return ann


def _forgetting(series: Series, styles: dict[str, Style], path: Path, *, bands: bool) -> Path:
    metrics = ["FA"] + (["FA_test"] if series.has("FA_test") else [])
    titles = {"FA": "FA (forgotten train samples)", "FA_test": "FA_test (test samples of the forgotten data)"}
    with matplotlib.rc_context(STYLE):
        n = len(series.labels)
        fig = _new_figure(3.2 + 0.17 * math.ceil(n / 5))
        axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
        oracle = series.oracle
        dodge = _dodge(series.labels, oracle, width=0.24)
        # the events from the first one where FA applies (earlier ones would be an empty stretch)
        applies = sorted({x for lab in series.labels for x in series.mean.get((lab, "FA"), {})})
        shown = [x for x in series.steps if x >= applies[0]] if applies else series.steps
        shown_values = [100 * v + sign * 100 * sd
                        for metric in metrics for lab in series.labels
                        for v, sd in zip(*series.get(lab, metric)[1:]) for sign in ((-1, 1) if bands else (0,))]
        for ax, metric in zip(axes, metrics):
            drawn = False
            for lab in series.labels:
                st = styles[lab]
                xs, m, sd = series.get(lab, metric)
                if not len(xs):
                    continue
                drawn = True
                if lab == oracle:
                    ax.plot(xs, 100 * m, color="black", ls="--", lw=1.6, marker="o", ms=3.5, mfc="white", zorder=5)
                else:
                    ax.plot(xs + dodge.get(lab, 0.0), 100 * m, color=st.colour, ls="-", lw=1.1, marker=st.marker,
                            mec="white", mew=0.4, zorder=st.zorder, alpha=0.95)
                if bands and np.any(sd > 0):
                    xb = xs if lab == oracle else xs + dodge.get(lab, 0.0)
                    ax.fill_between(xb, *_band(m, sd), color=st.colour, alpha=0.1 if lab != oracle else 0.07, lw=0,
                                    zorder=1)
            pad, labelled = _mark_events(ax, series, panel_width_in=WIDTH_IN / len(metrics) - 0.4, steps=shown)
            _pct_axis(ax, "accuracy on forgotten data (%)" if ax is axes[0] else "", shown_values)
            ax.set_title(titles[metric], pad=pad)
            if not drawn:
                _no_data(ax, "no unlearn request in this run: FA never applies")
        if len(metrics) > 1:
            axes[1].tick_params(labelleft=True)
        handles = _legend_handles(series, styles)
        handles.append(_unlearn_patch(series, with_kinds=not labelled))
        _shared_legend(fig, handles)
        _title(fig, "Forgetting (the oracle is the target)", series)
        return _save(fig, path)


_MATRIX_SPARE_IN = 1.5  # row labels, axis label, colour bar
_CELL_MIN_PT = 17.0  # room for "100" at 8 pt (about 14 pt wide)


def _matrix_columns(n: int, n_tasks: int, n_steps: int) -> tuple[int, bool]:
    """Subplot columns of the per-strategy grid, and whether the cells are large enough for numbers.

    The widest grid (≤ 5 columns) whose cells still fit a 3-digit number at 8 pt, without more than 4 rows;
    when none does (many tasks), 5 columns and colour only.
    """
    widest = max(1, min(n, 5))
    if n_tasks == 0 or n_steps > 30:
        return widest, False
    for ncols in range(widest, 0, -1):
        cell_pt = (WIDTH_IN - _MATRIX_SPARE_IN - 0.08 * (ncols - 1)) / (ncols * n_tasks) * 72
        if math.ceil(n / ncols) > 4:
            break
        if cell_pt >= _CELL_MIN_PT:
            return ncols, True
    return widest, False


def _accuracy_matrix(series: Series, styles: dict[str, Style], path: Path) -> Path:
    tasks = series.tasks()
    labels = series.labels
    n = len(labels)
    steps = series.steps
    ncols, annotate = _matrix_columns(n, len(tasks), len(steps))
    nrows = math.ceil(n / ncols)
    ncols = math.ceil(n / nrows)  # balance the rows (5 panels: 3 + 2 rather than 4 + 1)
    # a row of panels: title and tick labels plus the cells, the whole figure at most ~9.5 in high
    per_row_in = min(0.5 + (0.17 if annotate else 0.12) * len(steps), 8.8 / nrows, 4.0)
    panel_w_pt = (WIDTH_IN - _MATRIX_SPARE_IN) / ncols * 72
    rowlabels = [f"{s} {_kind_label(series.kinds[s])}" for s in steps]
    tick_w_pt = 5.0 * max((len(f"T{t}") for t in tasks), default=2) + 5  # 8 pt text plus a gap
    every_t = max(1, math.ceil(len(tasks) * tick_w_pt / panel_w_pt))
    every_s = max(1, math.ceil(len(steps) * 10.5 / ((per_row_in - 0.5) * 72)))
    with matplotlib.rc_context(STYLE | {"axes.grid": False}):
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.9")
        fig = _new_figure(0.6 + nrows * per_row_in + 0.1)
        axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
        image = None
        for idx, ax in enumerate(axes.flat):
            if idx >= n:
                ax.set_visible(False)
                continue
            lab = labels[idx]
            grid = np.full((len(steps), len(tasks)), np.nan)
            for j, t in enumerate(tasks):
                vals = series.mean.get((lab, f"acc_task_{t}"), {})
                for i, s in enumerate(steps):
                    if s in vals:
                        grid[i, j] = 100 * vals[s]
            image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=100, aspect="auto",
                              interpolation="nearest")
            if annotate:
                for i in range(len(steps)):
                    for j in range(len(tasks)):
                        v = grid[i, j]
                        if math.isfinite(v):
                            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=8,
                                    color="white" if v < 55 else "black", in_layout=False)  # inside the axes
            ax.set_xticks(range(0, len(tasks), every_t), [f"T{t}" for t in tasks[::every_t]])
            ax.set_yticks(range(0, len(steps), every_s), rowlabels[::every_s])
            ax.tick_params(length=0)
            for sp in ax.spines.values():
                sp.set_visible(False)
            title = f"{lab} (oracle)" if lab == series.oracle else lab
            ax.set_title(title, color=styles[lab].colour if styles[lab].colour != "black" else "black", fontsize=9)
            if not tasks:
                _no_data(ax, "no acc_task_* values")
        if image is not None and tasks:
            cb = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, aspect=30, pad=0.01)
            cb.set_label("test accuracy (%)")
        fig.supxlabel("task (grey: not learned yet or forgotten)", fontsize=8)
        fig.supylabel("after event (step, kind)", fontsize=8)
        _title(fig, "Per-task accuracy after each event", series)
        return _save(fig, path)


# --- public API --------------------------------------------------------------------------------------


def plot_run(run_dir: Path | str) -> list[Path]:
    """Draw a run folder's figures from its files alone; returns the paths written under ``run_dir/plots``.

    Reads ``metrics.csv`` (required) and ``summary.json`` (optional: scenario name, strategy names); raises
    :class:`clu.config.ConfigError` naming the folder when metrics.csv is missing or empty.
    """
    run_dir = Path(run_dir)
    series = _load_run(run_dir)
    styles = strategy_style(series.labels, series.names)
    out = run_dir / "plots"
    return [
        _stability_plasticity(series, styles, out / RUN_PLOTS[0], bands=False),
        _forgetting(series, styles, out / RUN_PLOTS[1], bands=False),
        _accuracy_matrix(series, styles, out / RUN_PLOTS[2]),
    ]


def plot_sweep(aggregate_csv: Path | str, out_dir: Path | str) -> list[Path]:
    """Per scenario of a sweep's ``aggregate.csv``: stability/plasticity and forgetting with ± std bands.

    Writes ``stability_plasticity-<scenario>.png`` and ``forgetting-<scenario>.png`` into ``out_dir`` and
    returns their paths. In the scatter, a point is the mean over events of the per-event means, and its
    error bar the mean over events of the per-event std over seeds (an upper bound on the std over seeds of
    the per-seed averages, which aggregate.csv does not keep).
    """
    aggregate_csv, out_dir = Path(aggregate_csv), Path(out_dir)
    scenarios = _load_aggregate(aggregate_csv)
    all_labels = _order_labels((lab for s in scenarios.values() for lab in s.labels), {})
    styles = strategy_style(all_labels)  # one mapping for every scenario of the sweep
    paths: list[Path] = []
    tags: set[str] = set()
    for scen, series in scenarios.items():
        tag = re.sub(r"[^A-Za-z0-9._-]+", "_", scen).strip("._") or "scenario"
        if tag in tags:  # two names that map to one file name: keep both apart
            tag = f"{tag}-{zlib.crc32(scen.encode()):08x}"
        tags.add(tag)
        paths.append(_stability_plasticity(series, styles, out_dir / f"stability_plasticity-{tag}.png", bands=True))
        paths.append(_forgetting(series, styles, out_dir / f"forgetting-{tag}.png", bands=True))
    return paths
