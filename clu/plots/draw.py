"""Drawing helpers shared by the figures: figure set-up and atomic saving, event marks, axes, legends."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from clu.plots.series import Series
from clu.plots.style import DPI, WIDTH_IN, Style

_KIND_SHORT = {"class": "class", "cross_task": "x-task", "random_sample": "random", "task": "task"}


def new_figure(height: float) -> Figure:
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path, after_layout: Callable[[], None] | None = None) -> Path:
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


def is_unlearn(kind: str) -> bool:
    return kind != "learn"


def kind_label(kind: str) -> str:
    return "+".join(_KIND_SHORT.get(p, p) for p in kind.split("+"))


def mark_events(
    ax: Any, series: Series, *, panel_width_in: float, steps: list[int] | None = None
) -> tuple[float, bool]:
    """Shade the unlearn events, label them by request kind above the axes, tick every event.

    The labels are horizontal where they fit between neighbouring requests, vertical where only that fits, and
    left out on very dense streams (the legend then names the kinds). Returns the title pad (points) that keeps
    the axes title clear of the labels, and whether they were drawn.
    """
    steps = steps or series.steps
    unlearn = [s for s in steps if is_unlearn(series.kinds[s])]
    texts = {s: kind_label(series.kinds[s]) for s in unlearn}
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
    event_ticks(ax, steps)
    ax.set_xlim(steps[0] - 0.6, steps[-1] + 0.6)
    ax.set_xlabel("event (step)")
    if not unlearn or not label:
        return 6.0, False
    return 8.0 + (longest * 5.2 if rotate else 10.0), True


def unlearn_patch(series: Series, *, with_kinds: bool) -> Patch:
    kinds = sorted({kind_label(k) for k in series.kinds.values() if is_unlearn(k)}) if with_kinds else []
    return Patch(color="0.88", label="unlearn request" + (f" ({', '.join(kinds)})" if kinds else ""))


def event_ticks(ax: Any, steps: list[int]) -> None:
    every = max(1, math.ceil(len(steps) / 16))
    ax.set_xticks(steps[::every])
    ax.grid(False, axis="x")


def pct_axis(ax: Any, label: str, values: Iterable[float] = ()) -> None:
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


def band(mean: Any, std: Any) -> tuple[np.ndarray, np.ndarray]:
    """mean ± std in %, clipped to the 0–100 % an accuracy can take."""
    mean, std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
    return np.clip(100 * (mean - std), 0, 100), np.clip(100 * (mean + std), 0, 100)


def yerr(mean: Any, std: Any) -> np.ndarray:
    """Asymmetric error bar lengths (%) for mean ± std clipped to 0–100 %."""
    lo, hi = band(mean, std)
    centre = 100 * np.asarray(mean, dtype=float)
    return np.array([np.atleast_1d(centre - lo), np.atleast_1d(hi - centre)])


_REPLICA_BAND: dict[str, Any] = {"facecolor": (0, 0, 0, 0.05), "edgecolor": "0.4", "hatch": "////", "lw": 0}
"""Hatched, so the band stays apart from the grey shading of the unlearn requests."""


def replica_band(ax: Any, series: Series, label: str, metric: str) -> list[float]:
    """Shade ``label``'s min–max over the run's replicas of ``metric`` (in %); returns the values shaded."""
    xs, lo, hi = series.spread(label, metric)
    if series.replicas < 2 or not len(xs):
        return []
    ax.fill_between(xs, 100 * lo, 100 * hi, zorder=1, **_REPLICA_BAND)
    return [*(100 * lo), *(100 * hi)]


def replica_patch(series: Series) -> Patch:
    """Legend entry of :func:`replica_band`."""
    return Patch(**_REPLICA_BAND, label=f"oracle: min–max over {series.replicas} replicas")


def dodge(labels: Sequence[str], oracle: str | None, width: float = 0.3) -> dict[str, float]:
    """Small x offsets so that markers of strategies with equal values stay visible side by side."""
    others = [lab for lab in labels if lab != oracle]
    out = {oracle: 0.0} if oracle else {}
    if len(others) == 1:
        return {**out, others[0]: 0.0}
    for i, lab in enumerate(others):
        out[lab] = -width / 2 + width * i / max(1, len(others) - 1)
    return out


def resurfacing(series: Series, label: str) -> list[tuple[float, float]]:
    """``label``'s resurfacing points: per request, (the later step of its highest FA, that FA) from the
    ``FA_resurface`` and ``FA_resurface_step`` rows of the request's event; only where that FA is above 0."""
    value = series.mean.get((label, "FA_resurface"), {})
    where = series.mean.get((label, "FA_resurface_step"), {})
    return [(where[s], value[s]) for s in sorted(value) if s in where and value[s] > 0]


def mark_resurfacing(ax: Any, series: Series, styles: dict[str, Style], offsets: dict[str, float]) -> bool:
    """Hollow triangles at every strategy's resurfacing points (:func:`resurfacing`); whether any was drawn."""
    drawn = False
    for lab in series.labels:
        points = resurfacing(series, lab)
        if not points:
            continue
        colour = "black" if lab == series.oracle else styles[lab].colour
        xs = np.array([p[0] for p in points]) + offsets.get(lab, 0.0)
        ax.plot(xs, [100 * p[1] for p in points], ls="none", marker="^", ms=6, mfc="none", mec=colour, mew=1.0,
                zorder=6)
        drawn = True
    return drawn


def resurfacing_handle() -> Line2D:
    """Legend entry of :func:`mark_resurfacing`."""
    return Line2D([], [], ls="none", marker="^", ms=6, mfc="none", mec="0.3",
                  label="FA_resurface: a request's highest FA at a later event")


def legend_handles(series: Series, styles: dict[str, Style]) -> list[Any]:
    handles = []
    for lab in series.labels:
        st = styles[lab]
        text = f"{lab} (oracle)" if lab == series.oracle else lab
        handles.append(Line2D([], [], color=st.colour, marker=st.marker, ls=st.linestyle, lw=st.linewidth,
                              label=text))
    return handles


def shared_legend(fig: Figure, handles: list[Any]) -> None:
    """One legend for the figure, below the panels: as many columns (≤ 6) as fit the figure's width."""
    renderer = fig.canvas.get_renderer()
    limit = fig.bbox.width * 0.98
    for ncol in range(min(len(handles), 6), 0, -1):
        legend = fig.legend(handles=handles, loc="outside lower center", ncol=ncol, handlelength=2.2,
                            columnspacing=1.2)
        if ncol == 1 or legend.get_window_extent(renderer).width <= limit:
            return
        legend.remove()


def title(fig: Figure, what: str, series: Series) -> None:
    sub = f", {series.subtitle}" if series.subtitle else ""
    fig.suptitle(f"{what} — {series.scenario}{sub}", fontweight="bold")


def no_data(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4", fontsize=8, wrap=True)

