"""The event loop for one (scenario, strategy, seed) (DESIGN §6 driver, §8 gaps, §12 determinism and resume)."""

from __future__ import annotations

import copy
import functools
import tomllib

import pytest
import torch

from clu.data import load_dataset
from clu.driver import build_strategy, run_events
from clu.events import steps as group_steps
from clu.results import EventRecord
from clu.scenario import events_for, scenario_from_dict
from clu.strategies import StrategyChoice, strategy_config
from tiny import TINY

CPU = torch.device("cpu")
torch.set_num_threads(1)
SPEC = scenario_from_dict(tomllib.loads(TINY), "tiny.toml")
DATA = load_dataset(SPEC.data)
STEPS = group_steps(events_for(SPEC, SPEC.seed))


def choice(name: str, **overrides) -> StrategyChoice:
    return StrategyChoice(name, name, strategy_config(name, overrides))


@functools.cache
def records(name: str, with_oracle: bool = False) -> tuple[EventRecord, ...]:
    strategy = build_strategy(choice(name), SPEC, DATA, SPEC.seed, CPU)
    oracle = records("retrain") if with_oracle else None
    return tuple(run_events(strategy, STEPS, DATA, seed=SPEC.seed, oracle=oracle))


def test_the_tiny_stream():
    assert [s.kind for s in STEPS] == ["learn", "learn", "class", "learn", "class"]


def test_every_strategy_starts_from_the_same_weights():
    def weights(name: str, seed: int) -> list[torch.Tensor]:
        s = build_strategy(choice(name), SPEC, DATA, seed, CPU)
        return [p.detach().clone() for p in s.model.parameters()]

    a, b, c = weights("er", 0), weights("ugclu", 0), weights("retrain", 0)
    assert all(torch.equal(x, y) and torch.equal(x, z) for x, y, z in zip(a, b, c))
    assert any(not torch.equal(x, y) for x, y in zip(a, weights("er", 1)))


def test_one_record_per_step_without_gaps_when_no_oracle():
    recs = records("er")
    assert [(r.step, r.kind) for r in recs] == [(s.index, s.kind) for s in STEPS]
    for r in recs:
        assert not any(k.endswith("_gap") for k in r.values) and "AvgGap" not in r.values
        assert r.values["KL"] is None
    # forget_probs holds the softmax on everything forgotten so far
    sizes = [len(r.forget_probs) for r in recs]
    forgotten = [len(STEPS[2].unlearn.sample_ids)] * 2 + [len(STEPS[2].unlearn.sample_ids) + len(STEPS[4].unlearn.sample_ids)]
    assert sizes == [0, 0, *forgotten]


def test_gaps_and_kl_against_the_oracle():
    oracle, recs = records("retrain"), records("er", with_oracle=True)
    plain = records("er")
    for o, r, p in zip(oracle, recs, plain):
        for m in ("TA", "RA", "FA", "FA_test", "MIA"):
            assert r.values[m] == p.values[m]  # the oracle changes no measurement, it adds gaps
            if r.values[m] is None or o.values[m] is None:
                assert r.values[f"{m}_gap"] is None
            else:
                assert r.values[f"{m}_gap"] == pytest.approx(abs(r.values[m] - o.values[m]))
        gaps = [r.values[f"{m}_gap"] for m in ("TA", "RA", "FA", "MIA") if r.values[f"{m}_gap"] is not None]
        assert r.values["AvgGap"] == pytest.approx(sum(gaps) / len(gaps))
        if len(r.forget_probs):
            assert r.values["KL"] is not None and r.values["KL"] >= 0
        else:
            assert r.values["KL"] is None
    # er only purges its buffer: its model still knows the forgotten class better than the oracle
    assert recs[2].values["FA"] > oracle[2].values["FA"]


def test_a_run_resumed_from_a_state_dict_gives_the_same_records():
    """Stop after event 2 (a request), restore into a fresh strategy, continue: identical records (§12)."""
    strategy = build_strategy(choice("er_rl", unlearn_iters=10), SPEC, DATA, SPEC.seed, CPU)
    full, saved = [], None
    for k, rec in enumerate(run_events(strategy, STEPS, DATA, seed=SPEC.seed)):
        full.append(rec)
        if k == 2:
            saved = copy.deepcopy(strategy.state_dict())
    fresh = build_strategy(choice("er_rl", unlearn_iters=10), SPEC, DATA, SPEC.seed, CPU)
    fresh.load_state_dict(saved)
    assert fresh.buffer.ids() != () and not set(fresh.buffer.ids()) & set(STEPS[2].unlearn.sample_ids)
    rest = list(run_events(fresh, STEPS, DATA, seed=SPEC.seed, start=3))
    assert [(r.step, r.kind) for r in rest] == [(3, "learn"), (4, "class")]
    for a, b in zip(full[3:], rest):
        assert a.values == b.values and a.per_task == b.per_task
        assert (a.forget_probs == b.forget_probs).all()


def test_event_record_state_round_trip():
    rec = records("er")[2]
    back = EventRecord.from_state(copy.deepcopy(rec.to_state()))
    assert (back.step, back.kind, back.values, back.per_task, back.time_s) == (
        rec.step, rec.kind, rec.values, rec.per_task, rec.time_s,
    )
    assert (back.forget_probs == rec.forget_probs).all() and back.forget_probs.shape == rec.forget_probs.shape


def test_one_call_per_step_and_an_attached_request_is_served_before_its_task(monkeypatch):
    attached = TINY.replace("[[schedule.rules]]", "[schedule]\nattach = true\n\n[[schedule.rules]]")
    spec = scenario_from_dict(tomllib.loads(attached), "tiny.toml")
    steps = group_steps(events_for(spec, spec.seed))
    assert [s.kind for s in steps] == ["learn", "learn", "learn+class", "class"]
    strategy = build_strategy(choice("er_ga", unlearn_iters=2), spec, DATA, spec.seed, CPU)
    calls: list[str] = []
    for method in ("learn", "unlearn", "forget", "train_task"):
        original = getattr(strategy, method)
        monkeypatch.setattr(strategy, method, lambda *a, _m=method, _f=original, **k: calls.append(_m) or _f(*a, **k))
    list(run_events(strategy, steps, DATA, seed=spec.seed))
    assert calls == [
        "learn", "train_task",
        "learn", "train_task",
        "learn", "unlearn", "forget", "train_task",  # the attached request first, as if it came alone
        "unlearn", "forget",
    ]
