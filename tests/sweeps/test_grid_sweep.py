"""``clu sweep --set``: scenario grids through the plan (names, resolved configs, fingerprints), the command line
(clean errors, nothing written), the serial and Ray executors (the same numbers), the grid's figures and
``--resume``.

One serial grid sweep (a module fixture, through ``clu.cli.main``) on a tiny random-sample scenario (3 tasks,
1 epoch, no shadow oracles): ``naive`` × seeds 0-1 × fraction 0.05, 0.2 — 12 trials of about a second each.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from clu.cli import main
from clu.results import TWIN
from clu.runconfig import load_run_config, run_config_from_toml
from clu.sweeps.plan import SweepRequest, plan_sweep
from tiny import TINY

RS = (TINY.replace('name = "tiny"', 'name = "rs"')
      .replace('kind = "class"', 'kind = "random_sample"\nfraction = 0.1\nstart_after = 1').replace(
          "start_after = 2", ""))
GRID = "schedule.rules[0].fraction=0.05,0.2"
POINTS = ("rs+fraction=0.05", "rs+fraction=0.2")


def _file(folder: Path, text: str = RS, name: str = "rs.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def _cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["sweep", *args])
    return code, out.getvalue(), err.getvalue()


def _values(path: Path) -> dict[tuple[str, ...], str]:
    """results.csv without wall-clock rows: (scenario, strategy, seed, replica, step, kind, metric) → value."""
    with path.open(newline="") as f:
        return {(r["scenario"], r["strategy"], r["seed"], r["replica"], r["step"], r["event_kind"], r["metric"]):
                r["value"] for r in csv.DictReader(f) if "time" not in r["metric"]}


ARGS = ["--strategies", "naive", "--seeds", "0-1", "--set", GRID]


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The reference grid sweep, serial, through the CLI: (sweep folder, scenario file)."""
    base = tmp_path_factory.mktemp("grid")
    scen = _file(base)
    code, _, err = _cli([str(scen), *ARGS, "--executor", "serial", "--out", str(base / "sweep")])
    assert code == 0, err
    return base / "sweep", scen


# ------------------------------------------------------------------------------------------------ plan


def test_plan_makes_one_scenario_per_value_with_its_resolved_config(tmp_path: Path) -> None:
    scen = _file(tmp_path)
    plan = plan_sweep(SweepRequest((str(scen),), ("naive",), (0,), executor="serial",
                                   grid=(GRID, "training.epochs=1,2")))
    names = ["rs+fraction=0.05+epochs=1", "rs+fraction=0.05+epochs=2", "rs+fraction=0.2+epochs=1",
             "rs+fraction=0.2+epochs=2"]
    assert plan.scenarios == tuple(names)
    assert plan.sources == {n: str(scen.resolve()) for n in names}
    assert plan.grid is not None and [p.scenario for p in plan.grid.points] == names
    assert len(plan.trials) == 4 * 3 and len({t.fingerprint for t in plan.trials}) == 12
    t = next(t for t in plan.trials if t.id == "rs+fraction=0.2+epochs=2/naive/0")
    cfg = run_config_from_toml(t.config_toml, "trial")
    assert (cfg.scenario.name, cfg.scenario.schedule.rules[0].fraction, cfg.scenario.training.epochs) == (
        "rs+fraction=0.2+epochs=2", 0.2, 2)
    assert t.folder(Path("/x")) == Path("/x/trials/rs+fraction=0.2+epochs=2/naive/seed-0")


def test_a_grid_point_is_the_scenario_file_with_that_value(tmp_path: Path) -> None:
    """The same config (hence fingerprint and numbers) as a file that says fraction = 0.2 under the point's name."""
    grid = plan_sweep(SweepRequest((str(_file(tmp_path)),), ("naive",), (0,), executor="serial", grid=(GRID,)))
    same = RS.replace('name = "rs"', f'name = "{POINTS[1]}"').replace("fraction = 0.1", "fraction = 0.2")
    plain = plan_sweep(SweepRequest((str(_file(tmp_path, same, "same.toml")),), ("naive",), (0,),
                                    executor="serial"))
    mine = {t.id: (t.config_toml, t.fingerprint) for t in grid.trials if t.scenario == POINTS[1]}
    assert mine == {t.id: (t.config_toml, t.fingerprint) for t in plain.trials}
    assert plain.grid is None


@pytest.mark.parametrize("arg, words", [
    ("schedule.rules[0].fractoin=0.1", "--set schedule.rules[0].fractoin=0.1: unknown key"),
    ("schedule.rules[2].fraction=0.1", "index [2] is out of range: schedule.rules has 1 item(s)"),
    ("training.epochs=1,two", "--set training.epochs=two: expected a whole number, got 'two'"),
    ("schedule.rules[0].fraction=0.5,2", "--set schedule.rules[0].fraction=2: must be in (0, 1], got 2.0"),
    ("split.n_tasks", "--set split.n_tasks: expected KEY=V1,V2"),
])
def test_bad_settings_exit_2_and_write_nothing(tmp_path: Path, arg: str, words: str) -> None:
    scen = _file(tmp_path)
    out = tmp_path / "out"
    code, stdout, stderr = _cli([str(scen), "--strategies", "naive", "--executor", "serial", "--set", arg,
                                 "--out", str(out)])
    assert code == 2 and words in stderr and stderr.startswith("clu: error: ")
    assert stderr.count("\n") == 1 and not stdout and not out.exists()
    if "KEY=" not in words:
        assert str(scen) in stderr  # the error names the scenario file too


# ---------------------------------------------------------------------------------------------- serial


def test_grid_sweep_outputs(serial: tuple[Path, Path]) -> None:
    out, scen = serial
    values = _values(out / "results.csv")
    assert {k[0] for k in values} == set(POINTS)
    assert {(k[0], k[1], k[2]) for k in values} == {(p, lab, s) for p in POINTS for lab in ("retrain", TWIN, "naive")
                                                   for s in ("0", "1")}
    table = (out / "table.md").read_text()
    assert all(f"## {p}\n" in table for p in POINTS)
    request = json.loads((out / "sweep.json").read_text())
    assert request["scenarios"] == list(POINTS)
    assert request["grid"]["set"] == [GRID]
    assert request["grid"]["points"][POINTS[1]] == {"base": "rs", "values": {"schedule.rules[0].fraction": 0.2}}
    plots = json.loads((out / "sweep_summary.json").read_text())["outputs"]["plots"]
    assert "plots/scaling-rs-fraction.png" in plots
    assert {f"plots/requests-{p.replace('+', '_').replace('=', '_')}.png" for p in POINTS} <= set(plots)
    for p in plots:
        assert (out / p).read_bytes()[:4] == b"\x89PNG"
    # each trial keeps its grid point's resolved scenario: re-runnable with `clu run config.toml`
    cfg = load_run_config(out / "trials" / POINTS[0] / "naive" / "seed-1" / "config.toml")
    assert (cfg.scenario.name, cfg.scenario.schedule.rules[0].fraction, cfg.seed) == (POINTS[0], 0.05, 1)
    # the random requests forget 5 % vs 20 % of the retained samples (the same pool at the first request)
    sizes = {}
    for p in POINTS:
        events = [json.loads(x) for x in (out / "trials" / p / "naive" / "seed-0" / "events.jsonl").open()]
        sizes[p] = [len(e["sample_ids"]) for e in events if e.get("kind") == "random_sample"]
    small, large = sizes[POINTS[0]], sizes[POINTS[1]]
    assert len(small) == len(large) == 3 and 3.8 < large[0] / small[0] < 4.2, sizes


def test_extend_treats_the_grid_as_part_of_the_request(serial: tuple[Path, Path], tmp_path: Path) -> None:
    """One more grid value with --extend: only its trials run, the others keep their numbers (--resume refuses
    a changed grid: it is another request)."""
    out = tmp_path / "sweep"
    shutil.copytree(serial[0], out)
    more = GRID.replace("0.05,", "0.05,0.1,")
    args = [str(serial[1]), *ARGS[:-1], more, "--executor", "serial", "--out", str(out)]
    code, _, stderr = _cli([*args, "--resume"])
    assert code == 2 and "the request differs" in stderr, stderr
    code, _, stderr = _cli([*args, "--extend"])
    assert code == 0, stderr
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert len(summary["skipped"]) == 12 and sorted(summary["ran"]) == sorted(
        f"rs+fraction=0.1/{lab}/{s}" for lab in ("retrain", TWIN, "naive") for s in (0, 1))
    got, ref = _values(out / "results.csv"), _values(serial[0] / "results.csv")
    assert {k: v for k, v in got.items() if k[0] != "rs+fraction=0.1"} == ref
    assert json.loads((out / "sweep.json").read_text())["scenarios"] == [POINTS[0], "rs+fraction=0.1", POINTS[1]]


# ---------------------------------------------------------------------------------------------- Ray


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_grid_sweep_on_ray_equals_serial(serial: tuple[Path, Path], tmp_path: Path) -> None:
    """Seed 0 only (6 trials; a seed's numbers do not depend on the other seeds of the sweep)."""
    out = tmp_path / "ray"
    code, _, stderr = _cli([str(serial[1]), "--strategies", "naive", "--seeds", "0", "--set", GRID, "--executor",
                            "ray", "--cpus-per-trial", "1", "--out", str(out)])
    assert code == 0, stderr
    got = _values(out / "results.csv")
    assert {k[0] for k in got} == set(POINTS)
    assert got == {k: v for k, v in _values(serial[0] / "results.csv").items() if k[2] == "0"}
    assert (out / "plots" / "scaling-rs-fraction.png").is_file()


def test_clu_plot_redraws_a_grid_sweeps_figures(serial: tuple[Path, Path], tmp_path: Path) -> None:
    """``clu plot SWEEP`` (issue 17): the same figures as the sweep drew, the grid's scaling and requests ones
    included (the grid read back from sweep.json)."""
    out, _ = serial
    drawn = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert any(n.startswith("scaling-") for n in drawn) and any(n.startswith("requests-") for n in drawn)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("plots", "trials"))
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["plot", str(copy)]) == 0
    assert sorted(p.name for p in (copy / "plots").glob("*.png")) == drawn
    assert len(printed.getvalue().split()) == len(drawn)
