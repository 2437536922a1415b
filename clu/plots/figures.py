"""The figures: stability–plasticity (OA over events and the mean NA–OA scatter), forgetting (FA and
FA_test over events, with each request's resurfacing marked) and the per-task accuracy matrix. Each takes a :class:`~clu.plots.series.Series`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.transforms import Bbox

from clu.plots.draw import (
    band,
    dodge,
    kind_label,
    legend_handles,
    mark_events,
    mark_resurfacing,
    new_figure,
    no_data,
    pct_axis,
    replica_band,
    replica_patch,
    resurfacing,
    resurfacing_handle,
    save,
    shared_legend,
    title,
    unlearn_patch,
    yerr,
)
from clu.plots.series import Series
from clu.plots.style import STYLE, WIDTH_IN, Style


def stability_plasticity(series: Series, styles: dict[str, Style], path: Path, *, bands: bool) -> Path:
    with matplotlib.rc_context(STYLE):
        n = len(series.labels)
        fig = new_figure(3.2 + 0.17 * math.ceil(n / 5))
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.55, 1]})
        oracle = series.oracle
        offsets = dodge(series.labels, oracle)
        points: list[tuple[str, float, float, float, float]] = []
        shown_values: list[float] = []
        for lab in series.labels:
            st = styles[lab]
            xo, oa, oa_sd = series.get(lab, "OA")
            xn, na, na_sd = series.get(lab, "NA")
            if lab == oracle and not bands:
                shown_values += replica_band(left, series, lab, "OA")
            if len(xo):
                left.plot(xo, 100 * oa, color=st.colour, ls=st.linestyle, lw=st.linewidth, zorder=st.zorder)
                if bands and np.any(oa_sd > 0):
                    left.fill_between(xo, *band(oa, oa_sd), color=st.colour, alpha=0.1 if lab != oracle else 0.07,
                                      lw=0, zorder=1)
            if len(xn):
                left.errorbar(xn + offsets.get(lab, 0.0), 100 * na, yerr=yerr(na, na_sd) if bands else None,
                              color=st.colour, marker=st.marker, ls="none", mfc=st.colour, mec="white", mew=0.4,
                              elinewidth=0.8, capsize=0, zorder=st.zorder + 1)
            shown_values += [*(100 * oa), *(100 * na)]
            if bands:
                shown_values += [*band(oa, oa_sd)[0], *band(na, na_sd)[0]]
            if len(xo) or len(xn):
                points.append((
                    lab,
                    100 * float(np.mean(na)) if len(na) else math.nan,
                    100 * float(np.mean(oa)) if len(oa) else math.nan,
                    100 * float(np.mean(na_sd)) if len(na_sd) else 0.0,
                    100 * float(np.mean(oa_sd)) if len(oa_sd) else 0.0,
                ))
        pad, labelled = mark_events(left, series, panel_width_in=WIDTH_IN * 0.55)
        pct_axis(left, "accuracy (%)", shown_values)
        left.set_title("OA (stability, lines) and NA (plasticity, markers)", pad=pad)
        if not points:
            no_data(left, "no OA / NA values in this run")

        placed = _scatter(right, points, styles, bands=bands)
        right.set_title("mean NA vs. mean OA" + (" (bars: ± std)" if bands else ""), pad=pad)

        handles = legend_handles(series, styles)
        handles += [Line2D([], [], color="0.3", ls="-", label="OA (stability)"),
                    Line2D([], [], color="0.3", marker="o", ls="none", label="NA (plasticity)"),
                    unlearn_patch(series, with_kinds=not labelled)]
        if oracle and not bands and series.replicas > 1:
            handles.append(replica_patch(series))
        shared_legend(fig, handles)
        title(fig, "Stability and plasticity", series)
        return save(fig, path, after_layout=lambda: _place_labels(right, placed, styles))


def _scatter(ax: Any, points: list[tuple[str, float, float, float, float]], styles: dict[str, Style],
             *, bands: bool) -> list[tuple[str, float, float, float, float]]:
    """The (mean NA, mean OA) points; returns those drawn, to be labelled once the layout is final."""
    pts = [p for p in points if math.isfinite(p[1]) and math.isfinite(p[2])]
    if not pts:
        no_data(ax, "NA or OA never applies in this run")
        ax.set_xlabel("mean NA (plasticity, %)")
        ax.set_ylabel("mean OA (stability, %)")
        return []
    for lab, x, y, xe, ye in pts:
        st = styles[lab]
        ax.errorbar(x, y, xerr=yerr(x / 100, xe / 100) if bands and xe > 0 else None,
                    yerr=yerr(y / 100, ye / 100) if bands and ye > 0 else None,
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


def forgetting(series: Series, styles: dict[str, Style], path: Path, *, bands: bool) -> Path:
    metrics = ["FA"] + (["FA_test"] if series.has("FA_test") else [])
    titles = {"FA": "FA (forgotten train samples)", "FA_test": "FA_test (test samples of the forgotten data)"}
    with matplotlib.rc_context(STYLE):
        n = len(series.labels)
        fig = new_figure(3.2 + 0.17 * math.ceil(n / 5))
        axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
        oracle = series.oracle
        offsets = dodge(series.labels, oracle, width=0.24)
        # the events from the first one where FA applies (earlier ones would be an empty stretch)
        applies = sorted({x for lab in series.labels for x in series.mean.get((lab, "FA"), {})})
        shown = [x for x in series.steps if x >= applies[0]] if applies else series.steps
        shown_values = [100 * v + sign * 100 * sd
                        for metric in metrics for lab in series.labels
                        for v, sd in zip(*series.get(lab, metric)[1:]) for sign in ((-1, 1) if bands else (0,))]
        shown_values += [100 * v for lab in series.labels for _, v in resurfacing(series, lab)]
        resurfaced = False
        for ax, metric in zip(axes, metrics):
            drawn = False
            for lab in series.labels:
                st = styles[lab]
                xs, m, sd = series.get(lab, metric)
                if not len(xs):
                    continue
                drawn = True
                if lab == oracle:
                    if not bands:
                        shown_values += replica_band(ax, series, lab, metric)
                    ax.plot(xs, 100 * m, color="black", ls="--", lw=1.6, marker="o", ms=3.5, mfc="white", zorder=5)
                else:
                    ax.plot(xs + offsets.get(lab, 0.0), 100 * m, color=st.colour, ls="-", lw=1.1, marker=st.marker,
                            mec="white", mew=0.4, zorder=st.zorder, alpha=0.95)
                if bands and np.any(sd > 0):
                    xb = xs if lab == oracle else xs + offsets.get(lab, 0.0)
                    ax.fill_between(xb, *band(m, sd), color=st.colour, alpha=0.1 if lab != oracle else 0.07, lw=0,
                                    zorder=1)
            if metric == "FA":
                resurfaced = mark_resurfacing(ax, series, styles, offsets)
            pad, labelled = mark_events(ax, series, panel_width_in=WIDTH_IN / len(metrics) - 0.4, steps=shown)
            pct_axis(ax, "accuracy on forgotten data (%)" if ax is axes[0] else "", shown_values)
            ax.set_title(titles[metric], pad=pad)
            if not drawn:
                no_data(ax, "no unlearn request in this run: FA never applies")
        if len(metrics) > 1:
            axes[1].tick_params(labelleft=True)
        handles = legend_handles(series, styles)
        handles.append(unlearn_patch(series, with_kinds=not labelled))
        if resurfaced:
            handles.append(resurfacing_handle())
        if oracle and not bands and series.replicas > 1:
            handles.append(replica_patch(series))
        shared_legend(fig, handles)
        title(fig, "Forgetting (the oracle is the target)", series)
        return save(fig, path)


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


def accuracy_matrix(series: Series, styles: dict[str, Style], path: Path) -> Path:
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
    rowlabels = [f"{s} {kind_label(series.kinds[s])}" for s in steps]
    tick_w_pt = 5.0 * max((len(f"T{t}") for t in tasks), default=2) + 5  # 8 pt text plus a gap
    every_t = max(1, math.ceil(len(tasks) * tick_w_pt / panel_w_pt))
    every_s = max(1, math.ceil(len(steps) * 10.5 / ((per_row_in - 0.5) * 72)))
    with matplotlib.rc_context(STYLE | {"axes.grid": False}):
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.9")
        fig = new_figure(0.6 + nrows * per_row_in + 0.1)
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
            heading = f"{lab} (oracle)" if lab == series.oracle else lab
            ax.set_title(heading, color=styles[lab].colour if styles[lab].colour != "black" else "black", fontsize=9)
            if not tasks:
                no_data(ax, "no acc_task_* values")
        if image is not None and tasks:
            cb = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, aspect=30, pad=0.01)
            cb.set_label("test accuracy (%)")
        fig.supxlabel("task (grey: not learned yet or forgotten)", fontsize=8)
        fig.supylabel("after event (step, kind)", fontsize=8)
        title(fig, "Per-task accuracy after each event", series)
        return save(fig, path)
