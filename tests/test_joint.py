"""clu.joint: gaps to the same replica's oracle, KL, LiRA against the shadows, dAvgGap and KLoM, on hand-made
units; then the same join on a real tiny run (files read back give the run's numbers)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from clu import metrics as M
from clu import resolve_config, seeding
from clu.joint import KLOM_MIN_REPLICAS, join, shadows_of
from clu.margins import EventMargins
from clu.mia import lira_metrics, lira_scores
from clu.results import ALL, TWIN, EventRecord, Unit, UnitSpec, read_run, read_units, write_run
from clu.runner import plan_units, run
from clu.summary import with_gaps
from tiny import TINY

KINDS = ("learn", "learn", "class")


def _unit(label: str, role: str, replica: int, shift: float, n_members: int = 2, n_non: int = 3) -> Unit:
    """Three events (the third a request): TA/RA/FA/MIA from ``shift``; margins drawn from ``shift``."""
    rng = np.random.default_rng([replica, int(100 * shift)])
    records = []
    for step, kind in enumerate(KINDS):
        forgotten = n_members if kind == "class" else 0
        values = {"TA": 0.9 - shift, "RA": 0.95 - shift, "FA": 0.1 + shift if forgotten else None,
                  "FA_test": None, "MIA": 0.5 + shift if forgotten else None}
        n = forgotten + (n_non if forgotten else 0)
        probs = np.full((forgotten, 4), 0.25)
        if forgotten:
            probs[:, 0] += shift / 2
            probs[:, 1] -= shift / 2
        margins = EventMargins(rng.normal(shift, 1.0, n), forgotten, probs,
                               rng.normal(shift + 1, 1.0, n) if kind == "class" else None)
        records.append(EventRecord(step, kind, values, {0: values["TA"]}, 1.0, margins))
    return Unit(UnitSpec(label, "retrain" if role != "strategy" else "er", replica, replica, replica, role), records)


def _run(replicas: int, extra_shadows: int = 0) -> list[Unit]:
    units = []
    for k in range(1, replicas + 1):
        units += [_unit("retrain", "oracle", k, 0.0), _unit(TWIN, "twin", k, 0.01), _unit("er", "strategy", k, 0.2)]
    units += [_unit(f"retrain (shadow {j})", "shadow", 1, 0.0 + j / 100) for j in range(1, extra_shadows + 1)]
    return units


def test_shadows_are_other_replicas_oracles_then_the_extra_ones() -> None:
    units = _run(3, extra_shadows=2)
    labels = lambda k, n: [(u.spec.label, u.spec.replica) for u in shadows_of(k, units, n)]  # noqa: E731
    assert labels(2, 3) == [("retrain", 1), ("retrain", 3), ("retrain (shadow 1)", 1)]
    assert labels(1, 1) == [("retrain", 2)] and labels(1, 0) == []
    assert len(shadows_of(1, units, 10)) == 4  # as many as there are


def test_join_gaps_kl_and_order() -> None:
    units = _run(2)
    joined = join(units, shadows=0)
    assert [(u.spec.label, u.spec.replica) for u in joined] == [
        ("retrain", 1), ("retrain", 2), (TWIN, 1), (TWIN, 2), (TWIN, ALL), ("er", 1), ("er", 2), ("er", ALL)]
    assert units[2].records[0].values.keys() == {"TA", "RA", "FA", "FA_test", "MIA"}  # inputs untouched
    oracle, er = joined[0], joined[5]
    for o, r in zip(oracle.records, er.records):
        assert r.values == {**with_gaps(r.values, o.values), "dAvgGap": r.values.get("dAvgGap")}
        assert r.values["TA_gap"] == pytest.approx(0.2)
        assert o.values["AvgGap"] == 0.0 and o.values["KL"] is None  # the oracle has no KL to itself
    assert er.records[2].values["KL"] == M.kl_divergence(oracle.records[2].margins.probs, er.records[2].margins.probs)
    assert er.records[0].values["KL"] is None  # nothing forgotten yet
    assert er.records[2].values["dAvgGap"] == pytest.approx(er.records[2].values["AvgGap"] - er.records[1].values["AvgGap"])
    assert er.records[1].values["dAvgGap"] is None  # a learn event
    assert all(v is None for r in er.records for k, v in r.values.items() if k.startswith("LiRA"))  # no shadows
    assert {"AvgGap_req", "AvgGap_L_mean", "dAvgGap_mean", "AvgGap_mean", "AIA"} <= set(er.final)
    assert er.final["AvgGap_req"] == er.records[2].values["AvgGap"]


def test_join_lira_against_the_shadows_now_and_before() -> None:
    units = _run(2, extra_shadows=1)
    joined = {(u.spec.label, u.spec.replica): u for u in join(units, shadows=2)}
    assert ("retrain (shadow 1)", 1) not in joined  # shadows are inputs only
    er = joined[("er", 2)]
    target = next(u for u in units if (u.spec.label, u.spec.replica) == ("er", 2)).records[2].margins
    shadows = np.stack([units[0].records[2].margins.phi, units[-1].records[2].margins.phi])  # oracle 1, shadow 1
    now = lira_metrics(*np.split(lira_scores(target.phi, shadows), [2]))
    before = lira_metrics(*np.split(lira_scores(target.before, shadows), [2]))
    values = er.records[2].values
    assert {k: values[k] for k in now} == now
    assert {f"{k}_before": values[f"{k}_before"] for k in before} == {f"{k}_before": v for k, v in before.items()}
    oracle2 = joined[("retrain", 2)].records[2].values
    assert values["LiRA_AUC_gap"] == pytest.approx(abs(values["LiRA_AUC"] - oracle2["LiRA_AUC"]))
    assert values["AvgGap_L"] is not None and er.final["AvgGap_L_req"] == values["AvgGap_L"]
    assert er.records[1].values["LiRA_AUC"] is None and er.records[1].values["LiRA_AUC_before"] is None


def test_klom_needs_enough_replicas() -> None:
    few = [u for u in join(_run(2), shadows=0) if u.spec.replica == ALL]
    assert [(u.spec.label, [r.step for r in u.records]) for u in few] == [(TWIN, [2]), ("er", [2])]
    assert few[1].records[0].values == {"KLoM": None, "KLoM_p95": None}
    units = _run(KLOM_MIN_REPLICAS)
    cross = {u.spec.label: u for u in join(units, shadows=0) if u.spec.replica == ALL}
    oracle = np.stack([u.records[2].margins.phi[:2] for u in units if u.spec.role == "oracle"])
    er = np.stack([u.records[2].margins.phi[:2] for u in units if u.spec.label == "er"])
    assert cross["er"].records[0].values == M.klom_summary(M.klom(oracle, er, 20))
    for u in units:  # a method whose margins lie far from the oracle's: disjoint histograms, KL ~ log(1/eps)
        if u.spec.label == "er":
            m = u.records[2].margins
            u.records[2].margins = EventMargins(m.phi + 50.0, m.n_members, m.probs, m.before)
    far = {u.spec.label: u for u in join(units, shadows=0) if u.spec.replica == ALL}
    assert far["er"].records[0].values["KLoM"] > 10 > cross[TWIN].records[0].values["KLoM"]


# --------------------------------------------------------------------------------------- real runs


def test_plan_units_replicas_twin_and_shadows(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(TINY)
    cfg = resolve_config(str(tmp_path / "tiny.toml"), ["er"], 4, "cpu", replicas=2, shadows=3)
    t2 = seeding.training_seed(4, 2)
    assert [(u.label, u.replica, u.init_seed, u.order_seed, u.role) for u in plan_units(cfg)] == [
        ("retrain", 1, 4, 4, "oracle"), (TWIN, 1, 4, seeding.twin_seed(4), "twin"), ("er", 1, 4, 4, "strategy"),
        ("retrain", 2, t2, t2, "oracle"), (TWIN, 2, t2, seeding.twin_seed(t2), "twin"), ("er", 2, t2, t2, "strategy"),
        *((f"retrain (shadow {j})", 1, seeding.shadow_seed(4, j), seeding.shadow_seed(4, j), "shadow") for j in (1, 2)),
    ]
    assert len(plan_units(resolve_config(str(tmp_path / "tiny.toml"), ["er"], 4, "cpu", replicas=5, shadows=3))) == 15


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    d = tmp_path_factory.mktemp("joint")
    (d / "tiny.toml").write_text(TINY)
    cfg = resolve_config(str(d / "tiny.toml"), ["er"], 0, "cpu", replicas=2, shadows=2)
    return d, cfg, run(cfg, d / "run", checkpoints="none", make_plots=False)


def test_a_replicated_run_has_every_figure(replicated) -> None:
    d, cfg, summary = replicated
    data = read_run(summary.out)
    assert [(s.label, s.replica) for s in data.strategies] == [
        ("retrain", 1), ("retrain", 2), (TWIN, 1), (TWIN, 2), (TWIN, ALL), ("er", 1), ("er", 2), ("er", ALL)]
    er = summary.data["strategies"]["er"]
    assert er["replicas"] == 2 and [p["replica"] for p in er["per_replica"]] == [1, 2]
    last = er["per_event"][-1]
    for m in ("LiRA_AUC", "LiRA_AUC_before", "AvgGap_L", "dAvgGap", "KL", "LiRA_AUC_gap"):
        assert last[m] is not None, m
    assert last["KLoM"] is None  # R < 16
    assert er["final"]["AvgGap_req"] is not None
    assert (summary.out / "margins/retrain-shadow-1/replica-1.npz").is_file()
    assert {p.name for p in (summary.out / "margins").iterdir()} == {"retrain", "retrain-twin", "er",
                                                                     "retrain-shadow-1"}


def test_files_read_back_join_to_the_same_numbers(replicated, tmp_path: Path) -> None:
    """What a sweep does: read every unit's folder and join: the run's metrics.csv, byte for byte."""
    d, cfg, summary = replicated
    units = read_units(summary.out)
    assert [u.spec for u in units] == plan_units(cfg)
    joined = join(units, shadows=cfg.n_shadows, klom_bins=cfg.scenario.evaluation.klom_bins)
    write_run(tmp_path, "tiny", 0, joined)
    assert (tmp_path / "metrics.csv").read_bytes() == (summary.out / "metrics.csv").read_bytes()


def test_one_unit_alone_measures_what_it_measures_in_the_whole_run(replicated) -> None:
    d, cfg, summary = replicated
    er2 = next(u for u in plan_units(cfg) if (u.label, u.replica) == ("er", 2))
    alone = run(cfg, d / "alone", units=[er2], checkpoints="none", make_plots=False)
    [unit] = read_units(alone.out)
    [whole] = [u for u in read_units(summary.out) if u.spec == er2]
    for a, b in zip(unit.records, whole.records):
        assert a.values == b.values and np.array_equal(a.margins.phi, b.margins.phi)
    assert tomllib.loads((alone.out / "config.toml").read_text())["replicas"] == 2
