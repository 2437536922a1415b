"""The figures (DESIGN §9–§10), drawn from result files alone.

``plot_run(run_dir)`` reads a run folder through :func:`clu.results.read_run` (``metrics.csv``, and
``summary.json`` when present, for the scenario name and the strategies' registry names) and writes
``plots/stability_plasticity.png``, ``plots/forgetting.png`` and ``plots/accuracy_matrix.png``; with R > 1
training replicas the lines are the mean over replicas and the oracle's min–max over them is a hatched band
(the floor a reader compares against).
``plot_sweep(aggregate_csv, out_dir)`` draws the same stability/plasticity and forgetting figures per scenario
from a sweep's ``aggregate.csv`` (:func:`clu.results.read_aggregate`), with ± std bands over seeds.
``plot_scaling(aggregate_csv, grid, out_dir)`` and ``plot_requests(aggregate_csv, out_dir)`` draw a scenario-grid
sweep's metrics against the grid values and against the number of requests so far (:mod:`clu.plots.scaling`).

Figures are sized for a two-column paper (7 in wide, 150 dpi, fonts ≥ 8 pt); a strategy keeps its colour and
marker in every figure (:mod:`clu.plots.style`), the oracle is always black and dashed, its twin grey and
dotted. Accuracies are shown in %. Every PNG is written to a temporary file in the target folder and renamed,
so a reader never sees half a figure.

Only this package imports matplotlib (``import clu`` does not). It selects the non-interactive Agg backend and
draws through ``matplotlib.figure.Figure`` directly, never through pyplot's global figure registry, so it is
safe in scripts, workers and notebooks alike.
"""

from __future__ import annotations

import json
import re
import sys
import zlib
from pathlib import Path
from typing import Sequence

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # pragma: no branch - never switch a backend pyplot already uses
    matplotlib.use("Agg")

from clu.plots.figures import accuracy_matrix, forgetting, stability_plasticity  # noqa: E402
from clu.plots.scaling import plot_requests, plot_scaling  # noqa: E402
from clu.plots.series import order_labels, run_series, sweep_series  # noqa: E402
from clu.plots.style import Style, strategy_style  # noqa: E402
from clu.config import ConfigError  # noqa: E402
from clu.grid import Grid  # noqa: E402
from clu.results import read_aggregate, read_run  # noqa: E402

RUN_PLOTS = ("stability_plasticity.png", "forgetting.png", "accuracy_matrix.png")


def plot_run(run_dir: Path | str) -> list[Path]:
    """Draw a run folder's figures from its files alone; returns the paths written under ``run_dir/plots``.

    Raises :class:`clu.config.ConfigError` naming the folder when metrics.csv is missing, empty or malformed.
    """
    run_dir = Path(run_dir)
    series = run_series(read_run(run_dir), run_dir)
    styles = strategy_style(series.labels, series.names)
    out = run_dir / "plots"
    return [
        stability_plasticity(series, styles, out / RUN_PLOTS[0], bands=False),
        forgetting(series, styles, out / RUN_PLOTS[1], bands=False),
        accuracy_matrix(series, styles, out / RUN_PLOTS[2]),
    ]


def plot_sweep(aggregate_csv: Path | str, out_dir: Path | str) -> list[Path]:
    """Per scenario of a sweep's ``aggregate.csv``: stability/plasticity and forgetting with ± std bands.

    Writes ``stability_plasticity-<scenario>.png`` and ``forgetting-<scenario>.png`` into ``out_dir`` and
    returns their paths. In the scatter, a point is the mean over events of the per-event means, and its
    error bar the mean over events of the per-event std over seeds (an upper bound on the std over seeds of
    the per-seed averages, which aggregate.csv does not keep).
    """
    aggregate_csv, out_dir = Path(aggregate_csv), Path(out_dir)
    scenarios = sweep_series(read_aggregate(aggregate_csv), aggregate_csv)
    all_labels = order_labels((lab for s in scenarios.values() for lab in s.labels), {})
    styles = strategy_style(all_labels)  # one mapping for every scenario of the sweep
    paths: list[Path] = []
    tags: set[str] = set()
    for scen, series in scenarios.items():
        tag = re.sub(r"[^A-Za-z0-9._-]+", "_", scen).strip("._") or "scenario"
        if tag in tags:  # two names that map to one file name: keep both apart
            tag = f"{tag}-{zlib.crc32(scen.encode()):08x}"
        tags.add(tag)
        paths.append(stability_plasticity(series, styles, out_dir / f"stability_plasticity-{tag}.png", bands=True))
        paths.append(forgetting(series, styles, out_dir / f"forgetting-{tag}.png", bands=True))
    return paths


def plot_sweep_folder(out: Path | str, grid: Grid | None = None, scenarios: Sequence[str] | None = None
                      ) -> list[Path]:
    """A sweep folder's figures from its ``aggregate.csv`` into ``out/plots``: :func:`plot_sweep`, and with a
    scenario grid its scaling and requests figures (``scenarios``: the grid's scenario names)."""
    out = Path(out)
    paths = plot_sweep(out / "aggregate.csv", out / "plots")
    if grid is not None:
        paths += plot_scaling(out / "aggregate.csv", grid, out / "plots")
        paths += plot_requests(out / "aggregate.csv", out / "plots", scenarios)
    return paths


def replot(folder: Path | str) -> list[Path]:
    """``clu plot DIR``: a run folder's figures (:func:`plot_run`), or a sweep folder's (one with sweep.json and
    aggregate.csv; its grid read back from sweep.json)."""
    folder = Path(folder)
    record = folder / "sweep.json"
    if not (record.is_file() and (folder / "aggregate.csv").is_file()):
        return plot_run(folder)
    try:
        sweep = json.loads(record.read_text())
        grid = Grid.from_record(sweep["grid"]) if "grid" in sweep else None
        scenarios = list(sweep["scenarios"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"not a readable sweep.json ({type(e).__name__}: {e})", file=record) from None
    return plot_sweep_folder(folder, grid, scenarios)


__all__ = ["RUN_PLOTS", "Style", "plot_requests", "plot_run", "plot_scaling", "plot_sweep", "plot_sweep_folder",
           "replot", "strategy_style"]
