"""Packing trials into Tune trials, the ``auto`` executor's choice, and a pack's run in its worker (no Ray).

The Ray side (packs on Tune, per-trial progress and retries, numbers equal to serial) is the slow test at the
end, in the Ray xdist group.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from clu.sweeps import executors as E
from clu.sweeps import run_sweep
from clu.sweeps.pack import BREAK_EVEN_TRIALS, Pack, choose_executor, pack_trials
from clu.sweeps.plan import SweepRequest, plan_sweep, read_done
from clu.sweeps.progress import Progress
from clu.sweeps.trial import run_pack
from tiny import TINY, metrics_csv_values


def _plan(tmp_path: Path, strategies: tuple[str, ...] = ("naive", "er"), seeds: tuple[int, ...] = (0, 1)) -> Any:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    return plan_sweep(SweepRequest((str(scenario),), strategies, seeds, executor="serial", shadows=0))


def test_packs_keep_every_trial_once_per_scenario_and_seed_in_plan_order(tmp_path: Path) -> None:
    trials = _plan(tmp_path, ("naive", "er", "er_ga"), (0, 1, 2)).trials  # 5 trials × 3 seeds
    # guided: at most ceil(R / (per_slot × slots)) trials per pack, R = trials not yet packed when it is cut;
    # e.g. (2, 2): R = 15 → 3, 12 → 2 | 10 → 3, 7 → 2 | 5 → 2, 3 → 1, 2 → 1, 1 → 1
    for slots, per_slot, sizes in ((1, 1, [5, 5, 5]), (2, 2, [3, 2, 3, 2, 2, 1, 1, 1]), (2, 8, [1] * 15),
                                   (1, 3, [5, 3, 2, 2, 1, 1, 1])):
        packs = pack_trials(trials, slots, per_slot)
        assert [len(p.trials) for p in packs] == sizes
        left = len(trials)
        for p in packs:
            assert len(p.trials) <= -(-left // (per_slot * slots))
            left -= len(p.trials)
        assert sorted(t.id for p in packs for t in p.trials) == sorted(t.id for t in trials)
        for p in packs:
            assert len({(t.scenario, t.seed) for t in p.trials}) == 1
            order = [trials.index(t) for t in p.trials]
            assert order == sorted(order)
    whole = pack_trials(trials, 1, 1)
    assert [p.trials[0].unit.role for p in whole] == ["oracle"] * 3  # the oracle leads its (scenario, seed)
    assert pack_trials([], 2) == []


def test_pack_spec_and_id(tmp_path: Path) -> None:
    trials = _plan(tmp_path).trials
    one, many = Pack(trials[:1]), Pack(tuple(t for t in trials if t.seed == 1), 2)
    out = tmp_path / "sweep"
    assert one.id == trials[0].id and one.spec(out) == {"id": trials[0].id, "dir": str(trials[0].folder(out)),
                                                        "units": [trials[0].spec(out)]}
    assert many.id == "tiny/1/pack-2"
    assert many.spec(out)["dir"] == str(out) and [u["id"] for u in many.spec(out)["units"]] == [
        t.id for t in many.trials]


@pytest.mark.parametrize(("args", "choice", "said"), [
    (("ray", 1, 1, None), "ray", None),
    (("serial", 10_000, 16, None), "serial", None),
    (("auto", 10_000, 2, "10.0.0.1:6379"), "ray", "Ray at 10.0.0.1:6379"),
    (("auto", 10_000, 1, None), "serial", "1 parallel slot"),
    (("auto", BREAK_EVEN_TRIALS - 1, 2, None), "serial", f"below the break-even of {BREAK_EVEN_TRIALS}"),
    (("auto", BREAK_EVEN_TRIALS, 2, None), "ray", "local Ray"),
])
def test_auto_picks_serial_below_the_break_even_and_says_so(args: tuple, choice: str, said: str | None) -> None:
    got, why = choose_executor(*args)
    assert got == choice
    assert (why is None) if said is None else (said in why and why.startswith("--executor auto"))
    assert choose_executor("auto", 10_000, 2, None, cuda_without_gpus=True)[0] == "serial"


def test_auto_is_the_default_and_runs_a_small_sweep_in_process(tmp_path: Path) -> None:
    """The tiny sweep (6 trials) is below the break-even: no Ray, the choice on stderr, the serial numbers."""
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    req = SweepRequest((str(scenario),), ("naive",), (0, 1), out=tmp_path / "auto", shadows=0)
    assert req.executor == "auto"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        result = run_sweep(req)
    assert result.exit_code == 0 and result.summary["finished"] == 6
    assert "--executor auto: 6 trial(s), below the break-even" in err.getvalue()
    assert not (tmp_path / "auto" / "tune").exists()


def test_a_pack_runs_its_trials_with_retries_and_skips_finished_ones(tmp_path: Path) -> None:
    trials = _plan(tmp_path, ("naive",), (0,)).trials  # retrain, twin, naive
    out = tmp_path / "sweep"
    pack = Pack(tuple(trials)).spec(out)
    settings = {"threads": 1, "out": str(out), "log": [], "retries": 1,
                "fail": f"{trials[1].id}:1,{trials[2].id}"}  # the twin fails once, naive on every attempt
    reported: list[dict] = []
    told = run_pack(pack, settings, reported.append)
    assert told == [json.loads(r["clu_event"]) for r in reported if "clu_event" in r]
    # the oracle's per-event measurements (results with its event steps) reach Tune before its attempt's end
    first_end = next(i for i, r in enumerate(reported) if "clu_event" in r)
    steps = {r["event_step"] for r in reported[:first_end] if r["strategy"] == "retrain"}
    assert len(steps) >= 2 and steps == set(range(len(steps)))
    assert [(e["event"], e["trial"]) for e in told] == [
        ("finished", trials[0].id), ("retry", trials[1].id), ("finished", trials[1].id),
        ("retry", trials[2].id), ("failed", trials[2].id)]
    assert "fails on purpose" in told[-1]["error"]
    assert told[0]["done"] == read_done(trials[0].folder(out), trials[0].fingerprint)
    # a second attempt of the pack (its worker died) runs only what has no done.json
    first = (trials[0].folder(out) / "done.json").stat().st_mtime_ns
    again = run_pack(pack, {**settings, "fail": None}, lambda result: None)
    assert [(e["event"], e["trial"]) for e in again] == [("finished", trials[2].id)]
    assert (trials[0].folder(out) / "done.json").stat().st_mtime_ns == first


def test_a_dead_worker_fails_the_running_trial_of_its_pack_only(tmp_path: Path) -> None:
    trials = _plan(tmp_path, ("naive",), (0,)).trials
    out = tmp_path / "sweep"
    pack = Pack(tuple(trials))
    run_pack({"units": [trials[0].spec(out)]}, {"threads": 1, "out": str(out), "log": []}, lambda e: None)
    progress = Progress(out, trials, retries=1, show=False)
    events = E._PackEvents(out, {pack.id: pack}, progress)
    events.worker_died(pack.id, "ActorDiedError: the actor died", gave_up=False)
    # the oracle finished before the worker died (its report lost): done; the twin was running: one attempt
    assert progress.outcomes[trials[0].id].ok and progress.attempts[trials[1].id] == 1
    assert trials[1].id not in progress.outcomes and trials[2].id not in progress.attempts
    events.told({"event": "finished", "trial": trials[0].id, "done": None})  # told again: ignored
    assert progress.attempts[trials[0].id] == 1
    events.worker_died(pack.id, "ActorDiedError: the actor died", gave_up=True)
    assert not progress.outcomes[trials[1].id].ok and progress.outcomes[trials[1].id].attempts == 2
    assert "not run" in progress.outcomes[trials[2].id].error


def test_cluster_slots() -> None:
    req = SweepRequest(("digits-class",), ("er",), cpus_per_trial=2.0, gpus_per_trial=0.5)
    assert E.cluster_slots({"CPU": 16.0, "GPU": 1.0}, req) == 2
    assert E.cluster_slots({"CPU": 16.0}, SweepRequest(("digits-class",), ("er",), cpus_per_trial=3.0)) == 5
    assert E.cluster_slots({"CPU": 1.0}, req) == 1


def _values(path: Path) -> dict[tuple[str, ...], str]:
    with path.open(newline="") as f:
        return {tuple(r[k] for k in ("scenario", "strategy", "seed", "replica", "step", "event_kind", "metric")):
                r["value"] for r in csv.DictReader(f) if "time" not in r["metric"]}


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_packed_ray_sweep_equals_serial_with_per_trial_retries(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Packs of a whole (scenario, seed) on Tune: per-trial progress lines, retries and failures as serially,
    and the serial executor's numbers."""
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    fields = {"scenarios": (str(scenario),), "strategies": ("naive", "er"), "seeds": (0, 1), "shadows": 0,
              "retries": 1, "fail_trials": "tiny/er/1,tiny/naive/0:1"}
    serial = run_sweep(SweepRequest(**fields, executor="serial", out=tmp_path / "serial", progress=False))
    monkeypatch.setattr(E, "pack_trials", lambda todo, slots: pack_trials(todo, 1, per_slot=1))  # a pack per seed
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        result = run_sweep(SweepRequest(**fields, executor="ray", out=tmp_path / "ray"))
    stderr = err.getvalue()
    assert result.exit_code == 1, stderr
    tune_dirs = sorted(p.name for p in next((tmp_path / "ray" / "tune").iterdir()).iterdir() if p.is_dir())
    assert tune_dirs == ["tiny_0_pack-1", "tiny_1_pack-1"]  # one Tune trial per (scenario, seed)
    def strip(entries):  # the trial folders differ by --out only
        if not isinstance(entries, list):
            return entries
        return [{k: v for k, v in e.items() if k != "folder"} if isinstance(e, dict) else e for e in entries]

    for key in ("failed", "retried", "finished", "missing"):
        assert strip(result.summary[key]) == strip(serial.summary[key]), key
    assert sorted(result.summary["ran"]) == sorted(serial.summary["ran"])
    assert len([x for x in stderr.splitlines() if x.startswith("[")]) == 8
    assert "tiny naive seed=0: attempt 1 of 2 failed" in stderr
    assert _values(tmp_path / "ray" / "results.csv") == _values(tmp_path / "serial" / "results.csv")
    # every per-event measurement reached Tune (one result per event and strategy): naive/0's metrics.csv values
    # are in its pack's result.json (its failed first attempt reported nothing)
    reported: dict[tuple[str, int, str], float] = {}
    pack_results = next((tmp_path / "ray" / "tune").iterdir()) / "tiny_0_pack-1" / "result.json"
    for line in pack_results.read_text().splitlines():
        r = json.loads(line)
        if r.get("strategy") == "naive":
            reported.update({("naive", r["event_step"], k): v for k, v in r.items()
                             if isinstance(v, float) and ("naive", r["event_step"], k) not in reported})
    trial = next(t for t in plan_sweep(SweepRequest(**fields, out=tmp_path / "ray")).trials if t.id == "tiny/naive/0")
    per_event = metrics_csv_values(trial.folder(tmp_path / "ray"))
    assert per_event and {k: v for k, v in reported.items() if k in per_event} == per_event
