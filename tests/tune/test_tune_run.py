"""``clu tune``: refusals, the objective, the sweep's split override, an end-to-end serial search on the tiny
scenario (tune.json, tune.csv, the preset) and the same choice on Ray."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from pathlib import Path

import pytest

from clu.cli import main
from clu.config import ConfigError
from clu.records import FINAL, ResultRow
from clu.strategies import resolve_strategy, strategy_config
from clu.sweeps.plan import SweepRequest, plan_sweep
from clu.tune import TuneRequest, tune
from clu.tune.run import check_tune_request, choose, objectives
from tiny import TINY

SPACE = 'strategy = "er_ga"\n[space]\nunlearn_iters = { choice = [1, 2, 3] }\nunlearn_lr = { loguniform = [0.001, 0.03] }\n'


def _files(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.toml").write_text(TINY)
    (folder / "space.toml").write_text(SPACE)
    return folder / "space.toml", folder / "tiny.toml"


def _cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["tune", *args])
    return code, out.getvalue(), err.getvalue()


def test_tuning_seeds_that_are_reporting_seeds_are_refused(tmp_path: Path) -> None:
    space, tiny = _files(tmp_path)
    with pytest.raises(ConfigError, match=r"tuning seeds \[2\] are also reporting seeds \(0-9\)") as e:
        check_tune_request(TuneRequest(space, (str(tiny),), seeds=(2, 100)))
    assert e.value.key == "--seeds"
    check_tune_request(TuneRequest(space, (str(tiny),), seeds=(2,), report_seeds=(0, 1)))
    code, _, err = _cli([str(space), "--scenarios", str(tiny), "--seeds", "5-6", "--executor", "serial",
                         "--out", str(tmp_path / "out")])
    assert code == 2 and "clu: error: --seeds: tuning seeds [5, 6] are also reporting seeds" in err
    assert "DESIGN §13" in err and not (tmp_path / "out").exists()


def test_an_empty_validation_split_is_refused(tmp_path: Path) -> None:
    space, tiny = _files(tmp_path)
    tiny.write_text(TINY.replace('name = "digits"', 'name = "digits"\nval_fraction = 0.0'))
    with pytest.raises(ConfigError, match="validation split") as e:
        check_tune_request(TuneRequest(space, (str(tiny),)))
    assert e.value.key == "data.val_fraction" and e.value.file == str(tiny)


def test_objective_and_choice() -> None:
    def row(label: str, seed: int, value: float | None, scenario: str = "a", metric: str = "AvgGap_req") -> ResultRow:
        return ResultRow(scenario, label, seed, 1, FINAL, "run", metric, value)

    rows = [row("x", 1, 0.2), row("x", 2, 0.4), row("x", 1, 0.9, "b"), row("x", 2, 0.9, "b"),
            row("y", 1, 0.1), row("y", 2, None), row("y", 1, 0.1, "b"), row("y", 2, 0.1, "b"),
            row("z", 1, 0.1), row("z", 2, 0.1), row("z", 1, 0.1, "b"), row("z", 2, 0.1, "b"),
            row("x", 1, 0.0, metric="AvgGap_mean")]
    got = objectives(rows, ["x", "y", "z"], ["a", "b"], [1, 2], bad={"z"})
    assert got["x"][0] == pytest.approx(0.6) and got["x"][1] == pytest.approx({"a": 0.3, "b": 0.9})
    assert math.isinf(got["y"][0]) and math.isinf(got["y"][1]["a"]) and got["y"][1]["b"] == pytest.approx(0.1)
    assert math.isinf(got["z"][0])  # a failed or diverged trial
    assert choose([0.5, 0.2, 0.2, math.inf]) == 1 and choose([math.inf, math.inf]) is None


def test_the_sweep_split_override(tmp_path: Path) -> None:
    _, tiny = _files(tmp_path)
    base = SweepRequest((str(tiny),), ("er",), (0,), executor="serial")
    plan = plan_sweep(base)
    val = plan_sweep(SweepRequest((str(tiny),), ("er",), (0,), executor="serial", split="validation"))
    assert plan.evaluation["tiny"].split == "test" and val.evaluation["tiny"].split == "validation"
    assert all('split = "validation"' in t.config_toml for t in val.trials)
    assert {t.fingerprint for t in plan.trials}.isdisjoint(t.fingerprint for t in val.trials)
    with pytest.raises(ConfigError, match="'train' is not allowed"):
        plan_sweep(SweepRequest((str(tiny),), ("er",), (0,), executor="serial", split="train"))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str, str]:
    root = tmp_path_factory.mktemp("tune")
    space, tiny = _files(root)
    out = root / "serial"
    code, stdout, stderr = _cli([str(space), "--scenarios", str(tiny), "--seeds", "100", "--budget", "3",
                                 "--executor", "serial", "--out", str(out)])
    return out, code, stdout, stderr


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_serial_tune_end_to_end(serial: tuple[Path, int, str, str]) -> None:
    out, code, stdout, stderr = serial
    assert code == 0, stderr
    assert len([x for x in stderr.splitlines() if x.startswith("[")]) == 5  # oracle, twin, 3 configurations
    info = json.loads((out / "tune.json").read_text())
    assert info["budget"] == 3 and info["seeds"] == [100] and info["scenarios"] == ["tiny"]
    assert info["split"] == "validation" and info["objective"]["name"] == "AvgGap_req"
    assert info["space"] == {"unlearn_iters": {"choice": [1, 2, 3]}, "unlearn_lr": {"loguniform": [0.001, 0.03]}}
    confs = info["configurations"]
    assert [c["label"] for c in confs] == ["er_ga-c00", "er_ga-c01", "er_ga-c02"]
    start = strategy_config("er_ga")  # configuration 0: the shipped preset
    assert confs[0]["values"] == {"unlearn_iters": start.unlearn_iters, "unlearn_lr": start.unlearn_lr}
    assert all(c["status"] == "ok" and c["objective"] > 0 for c in confs)
    rows = _csv(out / "tune.csv")
    assert list(rows[0]) == ["index", "label", "unlearn_iters", "unlearn_lr", "AvgGap_req", "AvgGap_req[tiny]"]
    best = min(range(3), key=lambda i: (float(rows[i]["AvgGap_req"]), i))
    assert info["chosen"] == best and f"chosen: er_ga-c0{best}" in stdout
    # the objective is the whole-run AvgGap_req the sweep wrote, on the validation split
    results = {(r["strategy"], r["metric"]): r["value"] for r in _csv(out / "results.csv") if r["step"] == "final"}
    assert all(float(results[(c["label"], "AvgGap_req")]) == c["objective"] for c in confs)
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["split"] == {"tiny": "validation"} and sweep["shadows"] == {"tiny": 0}
    for c in confs:
        assert resolve_strategy(str(out / c["file"])).label == c["label"]
    # the preset loads to exactly the chosen configuration, and its header records the search
    preset = Path(info["preset"])
    assert preset == out / "er-ga-tuned.toml"
    chosen = resolve_strategy(str(preset))
    assert chosen.name == "er_ga" and chosen.config == resolve_strategy(str(out / confs[best]["file"])).config
    header = [x[2:] for x in preset.read_text().splitlines() if x.startswith("# ")]
    for key in ("search_space = {", "budget = 3 configurations (sampler seed 0", "tuning_seeds = [100]",
                'tuning_scenarios = ["tiny"]', "objective = AvgGap_req", "objective_best = ", "date = ",
                "command = clu tune "):
        assert any(x.startswith(key) for x in header), key
    assert main(["report", str(out)]) == 0  # a tune folder is a sweep folder


def test_resume_reuses_every_trial(serial: tuple[Path, int, str, str]) -> None:
    out, code, _, _ = serial
    assert code == 0
    before = json.loads((out / "tune.json").read_text())
    result = tune(TuneRequest(out.parent / "space.toml", (str(out.parent / "tiny.toml"),), seeds=(100,), budget=3,
                              executor="serial", out=out, resume=True, progress=False,
                              preset=out / "again.toml"))
    assert result.summary["chosen"] == before["chosen"]
    assert json.loads((out / "sweep_summary.json").read_text())["ran"] == []
    assert [c["objective"] for c in result.summary["configurations"]] == [c["objective"]
                                                                          for c in before["configurations"]]
    assert resolve_strategy(str(out / "again.toml")).config == resolve_strategy(before["preset"]).config


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_ray_makes_the_same_choice(serial: tuple[Path, int, str, str], tmp_path: Path) -> None:
    out, code, _, _ = serial
    assert code == 0
    ray = tune(TuneRequest(out.parent / "space.toml", (str(out.parent / "tiny.toml"),), seeds=(100,), budget=3,
                           executor="ray", cpus_per_trial=1, out=tmp_path / "ray", progress=False))
    ref = json.loads((out / "tune.json").read_text())
    assert ray.exit_code == 0 and ray.summary["chosen"] == ref["chosen"]
    assert [c["objective"] for c in ray.summary["configurations"]] == [c["objective"] for c in ref["configurations"]]
    assert (tmp_path / "ray" / "er-ga-tuned.toml").read_text().split("# date")[0] == \
        Path(ref["preset"]).read_text().split("# date")[0]
