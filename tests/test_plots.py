"""Tests for clu.plots: the figures come from result files alone (DESIGN §9–§10)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import clu.plots as plots
from clu.config import ConfigError
from clu.plots.series import run_series, seeds_text, sweep_series
from clu.results import TWIN, AggregateRow, read_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABELS = ("ugclu", "er", "retrain")
# step, event kind, tasks learned (retained) after the event
EVENTS = [
    (0, "learn", [0]),
    (1, "learn", [0, 1]),
    (2, "class", [0, 1]),
    (3, "learn", [0, 1, 2]),
    (4, "task", [0, 2]),  # task 1 forgotten: its acc_task_ rows disappear
]


def _value(label: str, step: int, metric: str) -> float | None:
    """Deterministic made-up numbers; None where a metric does not apply (empty CSV cell)."""
    kind = EVENTS[step][1]
    base = {"ugclu": 0.9, "er": 0.8, "retrain": 0.95}[label] - 0.02 * step
    if metric == "NA":
        return base if kind == "learn" else None
    if metric == "OA":
        return None if step == 0 else base - 0.05
    if metric in ("FA", "FA_test"):
        if step < 2:
            return None
        return {"ugclu": 0.05, "er": 0.6 - 0.1 * step, "retrain": 0.0}[label]
    if metric == "KL":
        return None if label == "retrain" or step < 2 else 0.3
    return base


def write_run_folder(folder: Path, *, with_summary: bool = True, seeds: tuple[int, ...] = (0,),
                     replicas: int = 1, labels: tuple[str, ...] = LABELS) -> Path:
    """A small results folder as clu.runner writes it: metrics.csv (long format) and summary.json.
    Replica k adds 0.02 * (k - 1) to every per-event value."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    summary: dict = {"scenario": "toy-class", "seed": seeds[0], "strategies": {}}
    for label in labels:
        per_event = []
        base_label = "retrain" if label == TWIN else label
        for seed, replica in ((s, k) for s in seeds for k in range(1, replicas + 1)):
            for step, kind, tasks in EVENTS:
                rec = {"step": step, "kind": kind}
                for metric in ("TA", "RA", "FA", "FA_test", "NA", "OA", "MIA", "KL", "AvgGap"):
                    v = _value(base_label, step, metric)
                    v = None if v is None else v + 0.01 * seed + 0.02 * (replica - 1)
                    rows.append([label, seed, replica, step, kind, metric, "" if v is None else repr(v)])
                    rec[metric] = v
                for t in tasks:
                    acc = max(0.0, 0.97 - 0.1 * (step - t) - (0.3 if label == "er" else 0.0))
                    rows.append([label, seed, replica, step, kind, f"acc_task_{t}", repr(acc)])
                per_event.append(rec)
            for metric, v in (("AvgGap_mean", 0.1), ("AIA", 0.9), ("BWT", -0.05), ("Forgetting", 0.05)):
                rows.append([label, seed, replica, "final", "run", metric, repr(v)])
        summary["strategies"][label] = {"name": base_label, "final": {"TA": 0.9}, "per_event": per_event,
                                        "time_s": 1.0}
    with (folder / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["strategy", "seed", "replica", "step", "event_kind", "metric", "value"])
        w.writerows(rows)
    if with_summary:
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def write_aggregate(path: Path, scenarios: tuple[str, ...] = ("toy/class",)) -> Path:
    rows = []
    for scen in scenarios:
        for label in LABELS:
            for step, kind, tasks in EVENTS:
                for metric in ("TA", "FA", "FA_test", "NA", "OA", "AvgGap"):
                    v = _value(label, step, metric)
                    if v is None:
                        rows.append([scen, label, step, kind, metric, "", "", "", 0])
                    else:
                        std = 0.03 if label != "retrain" else 0.01
                        rows.append([scen, label, step, kind, metric, repr(v), repr(std), repr(2.5 * std), 3])
            rows.append([scen, label, "final", "run", "AIA", "0.9", "0.02", "0.05", 3])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["scenario", "strategy", "step", "event_kind", "metric", "mean", "std", "ci95", "n"])
        w.writerows(rows)
    return path


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert len(data) > 10_000, f"{path} is suspiciously small ({len(data)} bytes)"


@pytest.fixture(scope="module")
def plotted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """plot_run in a fresh interpreter, on a folder holding nothing but the result files (two seeds, a stale
    figure to overwrite). The same subprocess checks that ``import clu`` loads no matplotlib and that
    clu.plots selects Agg; one subprocess only, since importing clu costs seconds."""
    run = write_run_folder(tmp_path_factory.mktemp("plots") / "run", seeds=(0, 1))
    (run / "plots").mkdir()
    (run / "plots" / "forgetting.png").write_bytes(b"stale")
    code = (
        "import sys, clu\n"
        "print('matplotlib' in sys.modules)\n"
        "from clu.plots import plot_run\n"
        "import matplotlib\n"
        "print(matplotlib.get_backend().lower())\n"
        "print('\\n'.join(map(str, plot_run(sys.argv[1]))))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    out = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True,
                         cwd=run.parent, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    mpl_loaded, backend, *written = out.stdout.split()
    assert mpl_loaded == "False", "import clu loaded matplotlib"
    assert backend == "agg"
    return run, [Path(p) for p in written]


def test_plot_run_writes_three_pngs_from_the_folder_alone(plotted: tuple[Path, list[Path]]) -> None:
    run, paths = plotted
    assert [p.name for p in paths] == ["stability_plasticity.png", "forgetting.png", "accuracy_matrix.png"]
    for p in paths:
        assert p.parent == run / "plots"
        assert_png(p)  # the stale forgetting.png was replaced
    assert sorted(p.name for p in (run / "plots").iterdir()) == sorted(p.name for p in paths), "stray files"


def test_missing_metrics_names_the_folder(tmp_path: Path) -> None:
    empty = tmp_path / "no-metrics"
    empty.mkdir()
    with pytest.raises(ConfigError) as err:
        plots.plot_run(empty)
    assert err.value.file == str(empty)
    assert "metrics.csv" in str(err.value)
    assert not (empty / "plots").exists()


@pytest.mark.parametrize("content", ["", "strategy,seed,replica,step,event_kind,metric,value\n"])
def test_empty_metrics_is_a_config_error(tmp_path: Path, content: str) -> None:
    (tmp_path / "metrics.csv").write_text(content)
    with pytest.raises(ConfigError) as err:
        plots.plot_run(tmp_path)
    assert err.value.file == str(tmp_path)


def test_malformed_metrics_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text(
        "strategy,seed,replica,step,event_kind,metric,value\ner,0,1,zero,learn,TA,0.5\n")
    with pytest.raises(ConfigError, match="line 2"):
        plots.plot_run(tmp_path)
    (tmp_path / "metrics.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="lacks the column"):
        plots.plot_run(tmp_path)


def test_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        plots.plot_run(tmp_path / "nope")


def test_no_unlearning_still_draws(tmp_path: Path) -> None:
    """A learn-only run: FA never applies; the forgetting figure says so instead of failing."""
    (tmp_path / "metrics.csv").write_text(
        "strategy,seed,replica,step,event_kind,metric,value\n"
        "er,0,1,0,learn,NA,0.9\ner,0,1,0,learn,OA,\ner,0,1,0,learn,FA,\ner,0,1,0,learn,acc_task_0,0.9\n"
        "er,0,1,1,learn,NA,0.8\ner,0,1,1,learn,OA,0.7\ner,0,1,1,learn,acc_task_0,0.7\ner,0,1,1,learn,acc_task_1,0.8\n"
    )
    for p in plots.plot_run(tmp_path):
        assert_png(p)


def test_plot_sweep_writes_per_scenario(tmp_path: Path) -> None:
    agg = write_aggregate(tmp_path / "sweep" / "aggregate.csv")
    paths = plots.plot_sweep(agg, tmp_path / "sweep" / "plots")
    names = sorted(p.name for p in paths)
    assert names == ["forgetting-toy_class.png", "stability_plasticity-toy_class.png"]  # a safe file name
    for p in paths:
        assert_png(p)


def test_plot_sweep_missing_aggregate(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        plots.plot_sweep(tmp_path / "aggregate.csv", tmp_path / "out")
    assert "aggregate.csv" in str(err.value)


def test_styles_are_stable_and_oracle_is_black_dashed() -> None:
    a = plots.strategy_style(["ugclu", "er", "retrain", "my-variant"])
    b = plots.strategy_style(["retrain", "my-variant", "er", "ugclu"])
    assert a == b
    assert a["retrain"].colour == "black" and a["retrain"].linestyle == "--"
    assert len({s.colour for s in a.values()}) == 4
    named = plots.strategy_style(["ugclu-fast"], {"ugclu-fast": "ugclu"})
    assert named["ugclu-fast"].colour == a["ugclu"].colour
    assert plots.strategy_style(["oracle"], {"oracle": "retrain"})["oracle"].linestyle == "--"


def test_binary_metrics_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_bytes(b"\xff\xfe\x00garbage\x00\n")
    with pytest.raises(ConfigError):
        plots.plot_run(tmp_path)


def test_colours_come_from_a_hash_of_the_name() -> None:
    import zlib

    from clu.plots.style import PALETTE

    alone = plots.strategy_style(["brand-new-method"])["brand-new-method"]
    assert alone.colour == PALETTE[zlib.crc32(b"brand-new-method") % len(PALETTE)]  # no table of known names
    many = plots.strategy_style([f"m{i}" for i in range(len(PALETTE) + 5)])
    assert len({s.colour for s in many.values()}) == len(PALETTE)  # all colours used before any repeats
    assert all(s.colour != "black" for s in many.values())  # black is the oracle's


def test_run_series_keeps_the_replica_range(tmp_path: Path) -> None:
    run = write_run_folder(tmp_path / "run", replicas=3, labels=("er", TWIN, "retrain"))
    series = run_series(read_run(run), run)
    assert series.replicas == 3 and series.subtitle == "seed 0, 3 replicas"
    assert series.labels[-1] == "retrain" and series.oracle == "retrain"  # the twin (also a retrain) is not it
    xs, lo, hi = series.spread("retrain", "FA")
    assert list(xs) == [2, 3, 4]
    assert lo == pytest.approx([0.0] * 3) and hi == pytest.approx([0.04] * 3)  # replica k adds 0.02 (k - 1)
    assert series.get("retrain", "FA")[1] == pytest.approx([0.02] * 3)  # the line: the mean over replicas
    paths = plots.plot_run(run)  # draws the oracle's replica band
    for p in paths:
        assert_png(p)


def test_the_twin_is_grey_and_dotted_not_the_oracle() -> None:
    styles = plots.strategy_style(["er", TWIN, "retrain"], {TWIN: "retrain", "retrain": "retrain", "er": "er"})
    assert styles["retrain"].colour == "black" and styles["retrain"].linestyle == "--"
    assert styles[TWIN].linestyle == ":" and styles[TWIN].colour not in (styles["er"].colour, "black")


def test_forgetting_marks_each_requests_resurfacing(tmp_path: Path) -> None:
    """Per request, a hollow triangle at the later event of its highest FA (FA_resurface > 0 only)."""
    from matplotlib.figure import Figure

    from clu.plots.draw import mark_resurfacing, resurfacing

    (tmp_path / "metrics.csv").write_text(
        "strategy,seed,replica,step,event_kind,metric,value\n"
        "er,0,1,0,learn,NA,0.9\ner,0,1,0,learn,acc_task_0,0.9\n"
        "er,0,1,1,class,FA,0.1\ner,0,1,1,class,FA_resurface,0.4\ner,0,1,1,class,FA_resurface_step,3.0\n"
        "er,0,1,2,class,FA,0.2\ner,0,1,2,class,FA_resurface,0.0\ner,0,1,2,class,FA_resurface_step,3.0\n"
        "er,0,1,3,learn,FA,0.4\ner,0,1,3,learn,NA,0.8\ner,0,1,3,learn,acc_task_1,0.8\n"
        "retrain,0,1,1,class,FA,0.0\nretrain,0,1,1,class,FA_resurface,0.0\nretrain,0,1,3,learn,FA,0.0\n"
    )
    series = run_series(read_run(tmp_path), tmp_path)
    assert resurfacing(series, "er") == [(3.0, 0.4)] and resurfacing(series, "retrain") == []
    ax = Figure().subplots()
    assert mark_resurfacing(ax, series, plots.strategy_style(series.labels, series.names), {})
    [line] = [ln for ln in ax.lines if ln.get_marker() == "^"]
    assert list(line.get_xdata()) == [3.0] and list(line.get_ydata()) == [40.0]
    for p in plots.plot_run(tmp_path):
        assert_png(p)


def test_sweep_subtitle_gives_the_seed_count_or_its_range(tmp_path: Path) -> None:
    """aggregate.csv's n is per point (a metric applies to fewer seeds): one count when all agree, else a range."""
    def rows(*ns: int) -> list[AggregateRow]:
        return [AggregateRow("sc", "er", step, "learn", "TA", 0.9, None, None, n) for step, n in enumerate(ns)]

    assert sweep_series(rows(2, 1, 2), tmp_path)["sc"].subtitle == "mean ± std, n = 1–2 seeds"
    assert sweep_series(rows(5, 5), tmp_path)["sc"].subtitle == "mean ± std, n = 5 seeds"
    assert seeds_text([1, 0]) == "n = 1 seed" and seeds_text([]) == ""
