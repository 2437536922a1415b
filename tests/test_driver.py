"""The event loop for one unit (DESIGN §6 driver, §8 margins, §12 determinism and resume); gaps are test_joint's."""

from __future__ import annotations

import copy
import functools
import tomllib

import numpy as np
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
def records(name: str) -> tuple[EventRecord, ...]:
    strategy = build_strategy(choice(name), SPEC, DATA, SPEC.seed, CPU)
    return tuple(run_events(strategy, STEPS, DATA, seed=SPEC.seed))


def test_the_tiny_stream():
    assert [s.kind for s in STEPS] == ["learn", "learn", "class", "learn", "class"]


def test_every_strategy_starts_from_the_same_weights():
    def weights(name: str, seed: int) -> list[torch.Tensor]:
        s = build_strategy(choice(name), SPEC, DATA, seed, CPU)
        return [p.detach().clone() for p in s.model.parameters()]

    a, b, c = weights("er", 0), weights("ugclu", 0), weights("retrain", 0)
    assert all(torch.equal(x, y) and torch.equal(x, z) for x, y, z in zip(a, b, c))
    assert any(not torch.equal(x, y) for x, y in zip(a, weights("er", 1)))


def test_init_and_order_seeds_are_separate():
    """init_seed gives the weights, order_seed the batch order; the scenario seed stays the class order's."""
    base = build_strategy(choice("er"), SPEC, DATA, 0, CPU)
    other = build_strategy(choice("er"), SPEC, DATA, 0, CPU, init_seed=0, order_seed=5)
    assert all(torch.equal(x, y) for x, y in zip(base.model.parameters(), other.model.parameters()))
    assert other.ctx.seed == 5 and base.ctx.class_tasks == other.ctx.class_tasks
    assert not torch.equal(torch.randperm(50, generator=base.gen), torch.randperm(50, generator=other.gen))
    moved = build_strategy(choice("er"), SPEC, DATA, 0, CPU, init_seed=3)
    assert any(not torch.equal(x, y) for x, y in zip(base.model.parameters(), moved.model.parameters()))
    assert moved.ctx.seed == 0


def test_one_record_per_step_with_its_own_measurements_and_margins():
    recs = records("er")
    assert [(r.step, r.kind) for r in recs] == [(s.index, s.kind) for s in STEPS]
    for r in recs:
        assert not any(k.endswith("_gap") for k in r.values) and "AvgGap" not in r.values and "KL" not in r.values
    # the margins hold the softmax on everything forgotten so far and φ on the attack set
    sizes = [r.margins.n_members for r in recs]
    forgotten = [len(STEPS[2].unlearn.sample_ids)] * 2 + [len(STEPS[2].unlearn.sample_ids) + len(STEPS[4].unlearn.sample_ids)]
    assert sizes == [0, 0, *forgotten] and [len(r.margins.probs) for r in recs] == sizes
    test_of_forgotten = [int(np.isin(DATA.y_test.numpy(), DATA.y_train[list(STEPS[k].unlearn.sample_ids)].unique()
                                     .numpy()).sum()) for k in (2, 4)]
    assert len(recs[2].margins.phi) == sizes[2] + test_of_forgotten[0]
    # φ just before the request: at request events only, on the same sets
    assert [r.margins.before is not None for r in recs] == [False, False, True, False, True]
    assert len(recs[4].margins.before) == len(recs[4].margins.phi)
    # er's request only purges its buffer: the model, and so φ, is the one from before the request
    assert np.array_equal(recs[2].margins.before, recs[2].margins.phi)
    oracle = records("retrain")  # the oracle retrains without the data: φ changes
    assert not np.array_equal(oracle[2].margins.before, oracle[2].margins.phi)


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
        assert a.values == b.values and a.per_task == b.per_task and a.per_request == b.per_request
        assert np.array_equal(a.margins.phi, b.margins.phi) and np.array_equal(a.margins.probs, b.margins.probs)


def test_event_record_state_round_trip():
    rec = records("er")[2]
    back = EventRecord.from_state(copy.deepcopy(rec.to_state()))
    assert (back.step, back.kind, back.values, back.per_task, back.time_s, back.per_request) == (
        rec.step, rec.kind, rec.values, rec.per_task, rec.time_s, rec.per_request,
    )
    assert rec.per_request.keys() == {0}
    assert np.array_equal(back.margins.probs, rec.margins.probs) and back.margins.probs.shape == rec.margins.probs.shape
    assert np.array_equal(back.margins.before, rec.margins.before) and back.margins.n_members == rec.margins.n_members


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
