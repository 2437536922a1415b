"""clu.plots.scaling: a grid sweep's metrics against the grid values and against the requests so far, from
hand-made aggregate rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from clu.config import ConfigError
from clu.grid import Grid, GridPoint
from clu.plots import plot_requests, plot_scaling
from clu.plots.scaling import Stat, request_curves, scaling_curves
from clu.results import FINAL, AggregateRow, aggregate_csv, write_atomic

FRACTIONS = (0.2, 0.01, 0.05)
"""Given out of order: a numeric axis is drawn ascending."""


def _name(f: float, e: int) -> str:
    return f"rs+fraction={f}+epochs={e}"


GRID = Grid(
    axes=(("schedule.rules[0].fraction", FRACTIONS), ("training.epochs", (3, 15))),
    short=(("schedule.rules[0].fraction", "fraction"), ("training.epochs", "epochs")),
    points=tuple(GridPoint(_name(f, e), "rs", (("schedule.rules[0].fraction", f), ("training.epochs", e)))
                 for f in FRACTIONS for e in (3, 15)),
)


def _rows() -> list[AggregateRow]:
    """Per grid point: learn (0), request (1), learn (2), request (3); TA falls with the fraction and the epochs."""
    rows = []
    for p in GRID.points:
        f, e = p.value("schedule.rules[0].fraction"), p.value("training.epochs")
        for lab in ("retrain", "er"):
            for step, kind in ((0, "learn"), (1, "random_sample"), (2, "learn"), (3, "random_sample")):
                ta = 0.9 - f - e / 100 - step / 100 - (0.1 if lab == "er" else 0.0)
                rows.append(AggregateRow(p.scenario, lab, step, kind, "TA", ta, 0.01, 0.02, 3))
                rows.append(AggregateRow(p.scenario, lab, step, kind, "AvgGap", 0.1 * step if lab == "er" else None,
                                         None, None, 0 if lab == "retrain" else 3))
            rows.append(AggregateRow(p.scenario, lab, FINAL, "run", "AvgGap_req", f if lab == "er" else 0.0, 0.01,
                                     None, 1))
    return rows


def test_scaling_curves_one_figure_per_axis_and_fixed_other_value() -> None:
    curves = dict(scaling_curves(_rows(), GRID))
    assert sorted(curves) == ["scaling-rs-epochs_fraction-0.01", "scaling-rs-epochs_fraction-0.05",
                              "scaling-rs-epochs_fraction-0.2", "scaling-rs-fraction_epochs-15",
                              "scaling-rs-fraction_epochs-3"]
    c = curves["scaling-rs-fraction_epochs-15"]
    assert c.xs == [0.01, 0.05, 0.2] and c.xlabel == "schedule.rules[0].fraction"
    assert c.labels == ["er", "retrain"]  # the oracle last
    # TA: the value at the last event (step 3); AvgGap_req: the whole-run row; no band below 2 seeds (ci95 None)
    assert c.values[("er", "TA")] == [Stat(pytest.approx(0.9 - f - 0.15 - 0.03 - 0.1), 0.02) for f in c.xs]
    assert c.values[("er", "AvgGap_req")] == [Stat(f, None) for f in c.xs]
    assert c.values[("er", "unlearn_time_vs_oracle")] == [None, None, None]
    assert curves["scaling-rs-epochs_fraction-0.05"].xs == [3, 15]


def test_a_single_valued_axis_gets_no_scaling_figure() -> None:
    one = Grid(GRID.axes[:1] + (("training.epochs", (3,)),), GRID.short,
               tuple(p for p in GRID.points if p.value("training.epochs") == 3))
    assert [stem for stem, _ in scaling_curves(_rows(), one)] == ["scaling-rs-fraction_epochs-3"]


def test_request_curves_count_the_requests() -> None:
    curves = dict(request_curves(_rows(), [_name(0.05, 3)]))
    c = curves["requests-rs_fraction_0.05_epochs_3"]
    assert c.xs == [1, 2] and c.xlabel == "requests so far"
    assert c.values[("er", "AvgGap")] == [Stat(pytest.approx(0.1), None), Stat(pytest.approx(0.3), None)]
    assert c.values[("retrain", "AvgGap")] == [None, None]
    assert len(request_curves(_rows())) == len(GRID.points)  # every scenario when none are named


def test_plots_are_written_as_png(tmp_path: Path) -> None:
    agg = tmp_path / "aggregate.csv"
    write_atomic(agg, aggregate_csv(_rows()))
    small = Grid(GRID.axes[:1] + (("training.epochs", (3,)),), GRID.short,
                 tuple(p for p in GRID.points if p.value("training.epochs") == 3))
    paths = plot_scaling(agg, small, tmp_path / "plots") + plot_requests(agg, tmp_path / "plots", [_name(0.2, 3)])
    assert [p.name for p in paths] == ["scaling-rs-fraction_epochs-3.png", "requests-rs_fraction_0.2_epochs_3.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(p.name for p in paths)  # no temp files


def test_a_malformed_aggregate_csv_is_a_clean_error(tmp_path: Path) -> None:
    (tmp_path / "aggregate.csv").write_text("scenario,strategy\nx,y\n")
    with pytest.raises(ConfigError):
        plot_scaling(tmp_path / "aggregate.csv", GRID, tmp_path / "plots")
    assert not (tmp_path / "plots").exists()


def test_title_gives_the_seed_count_or_its_range(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """n varies per point (here 1 or 3 seeds where a metric applies): the title gives the range, not '1/3'."""
    import matplotlib.pyplot as plt

    from clu.plots import scaling

    titles: list[str] = []

    def keep_title(fig: object, path: Path) -> Path:
        titles.append(fig.get_suptitle())  # type: ignore[attr-defined]
        plt.close(fig)  # type: ignore[arg-type]
        return path

    monkeypatch.setattr(scaling, "save", keep_title)
    _, c = request_curves(_rows(), [_name(0.2, 3)])[0]
    scaling.draw(c, scaling.strategy_style(c.labels), tmp_path / "r.png", "Over the requests")
    assert titles == [f"Over the requests — {_name(0.2, 3)}, mean ± 95 % CI, n = 1–3 seeds"]
