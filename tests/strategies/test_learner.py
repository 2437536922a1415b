"""One learner for all replay strategies (DESIGN §13): a plain learn iteration is the same function in
``er``, every ``er_*``, ``ugclu`` and ``retrain_stream``; ``learner`` switches it, ugclu's ``order`` governs
request iterations only."""

from __future__ import annotations

import functools
import tomllib

import pytest
import torch

from clu.data import load_dataset
from clu.driver import build_strategy, run_events
from clu.events import steps as group_steps
from clu.scenario import events_for, scenario_from_dict
from clu.strategies import STRATEGIES, ReplayConfig, StrategyChoice, StrategyConfig, strategy_config
from clu.strategies.base import CLUStrategy, RunContext
from clu.strategies.er import ER, ReplayLearner
from tiny import TINY

CPU = torch.device("cpu")
torch.set_num_threads(1)
SPEC = scenario_from_dict(tomllib.loads(TINY), "tiny.toml")
DATA = load_dataset(SPEC.data)
STEPS = group_steps(events_for(SPEC, SPEC.seed))
REPLAY = [n for n, e in STRATEGIES.items() if not e.task_aware_only and issubclass(e.load(), ReplayLearner)]
LEARNERS = ("fast_slow", "joint")


def test_every_replay_strategy_has_the_learner_setting():
    assert {"er", "er_ft", "er_ga", "er_rl", "er_salun", "er_sfron", "ugclu", "retrain_stream"} <= set(REPLAY)
    for name in REPLAY:
        assert issubclass(STRATEGIES[name].config_class, ReplayConfig), name
        assert strategy_config(name).learner == "fast_slow"


def _strategy(name: str, **overrides) -> CLUStrategy:
    return build_strategy(StrategyChoice(name, name, strategy_config(name, overrides)), SPEC, DATA, SPEC.seed, CPU)


@functools.cache
def _after_learning(name: str, learner: str) -> dict[str, torch.Tensor]:
    """Weights after the first two learn tasks (the first request comes at step 2)."""
    assert [s.kind for s in STEPS[:3]] == ["learn", "learn", "class"]
    strategy = _strategy(name, learner=learner)
    list(run_events(strategy, STEPS[:2], DATA, seed=SPEC.seed))
    return {k: v.detach().clone() for k, v in strategy.model.state_dict().items()}


@pytest.mark.parametrize("learner", LEARNERS)
def test_plain_learn_iterations_are_bit_identical_across_replay_strategies(learner):
    """ugclu's default constant coefficients (p_L = p_R = 1), no learn mask: exactly er's learner."""
    er = _after_learning("er", learner)
    for name in REPLAY:
        other = _after_learning(name, learner)
        assert all(torch.equal(er[k], other[k]) for k in er), f"{name} ({learner}) learns differently from er"


def test_the_learner_setting_changes_the_weights():
    for name in ("er", "ugclu"):
        fast_slow, joint = _after_learning(name, "fast_slow"), _after_learning(name, "joint")
        assert any(not torch.equal(fast_slow[k], joint[k]) for k in fast_slow), name


def test_a_replay_strategy_refuses_a_config_without_the_learner():
    ctx = RunContext(DATA, 0, 1, 32, 10, False, CPU)
    with pytest.raises(TypeError, match="ReplayConfig"):
        ER(model=torch.nn.Linear(64, 10), config=StrategyConfig(), context=ctx)


def _step_calls(learner: str, order: str, monkeypatch, log: list | None = None) -> list[tuple[str, str, float]]:
    """(phase, order, clip) of every update ugclu takes on: learn, learn, learn + class (attached), class; phase
    "attached" is an iteration whose fast step carries the attached request's unlearn term. ``log`` (if given)
    gets (phase, iteration t, number of fast terms, preserve loss present, forgotten ids in the buffer)."""
    attached = TINY.replace("[[schedule.rules]]", "[schedule]\nattach = true\n\n[[schedule.rules]]")
    spec = scenario_from_dict(tomllib.loads(attached))
    steps = group_steps(events_for(spec, spec.seed))
    assert [s.kind for s in steps] == ["learn", "learn", "learn+class", "class"]
    strategy = build_strategy(StrategyChoice("ugclu", "ugclu", strategy_config(
        "ugclu", {"learner": learner, "order": order, "unlearn_iters": 10, "forget_freq": 5})), spec, DATA, spec.seed, CPU)
    calls: list[tuple[str, str, float]] = []
    alone = [False]
    step, forget = strategy.step, strategy.forget

    def recording(fast, slow=None, *, clip=0.0, order="fast_slow"):
        attached = strategy.forget_term is not None and len(fast) == 2
        phase = "request" if alone[0] else "attached" if attached else "learn"
        calls.append((phase, order, clip))
        if log is not None and strategy.forget_term is not None and not alone[0]:
            gone = set(strategy.forget_term.ids.tolist()) & set(strategy.buffer.ids())
            log.append((phase, strategy.t, len(fast), slow is not None and slow() is not None, len(gone)))
        step(fast, slow, clip=clip, order=order)

    def forgetting(request):  # a request alone (ugclu serves an attached one in learn)
        alone[0] = True
        forget(request)
        alone[0] = False

    monkeypatch.setattr(strategy, "step", recording)
    monkeypatch.setattr(strategy, "forget", forgetting)
    list(run_events(strategy, steps, DATA, seed=spec.seed))
    return calls


@pytest.mark.parametrize(("learner", "order"), [("joint", "fast_slow"), ("fast_slow", "joint")])
def test_ugclu_learn_iterations_follow_learner_and_request_iterations_follow_order(learner, order, monkeypatch):
    calls = _step_calls(learner, order, monkeypatch)
    clip = strategy_config("ugclu").clip
    assert clip > 0
    by_phase = {p: {(o, c) for q, o, c in calls if q == p} for p in ("learn", "attached", "request")}
    assert by_phase["learn"] == {(learner, 0.0)}  # plain learn iterations: the learner, never clipped
    assert by_phase["attached"] == {(order, clip)}  # a request riding along a learn task
    assert by_phase["request"] == {(order, clip)}  # the unlearn-only request
    assert [p for p, _, _ in calls].count("request") == 10


def test_an_attached_request_gets_the_unlearn_only_forget_steps_spread_over_the_task(monkeypatch):
    """The learn task carrying a request: learn, unlearn and preserve terms act together exactly at the
    iterations :func:`attached_coefficient` gives (the unlearn-only forget steps spread over the task), the
    others are plain learner iterations, and the request's ids left the buffer before the first unlearn term."""
    from clu.strategies.forgetting import attached_coefficient

    log: list = []
    _step_calls("fast_slow", "fast_slow", monkeypatch, log)
    cfg = strategy_config("ugclu", {"unlearn_iters": 10, "forget_freq": 5})  # as _step_calls builds it
    total = len(log)
    expected = [t for t in range(total) if attached_coefficient(cfg, t, total) > 0]
    assert [t for phase, t, *_ in log if phase == "attached"] == expected == [0, total // 2]
    assert all(n == 2 and preserve for phase, _, n, preserve, _ in log if phase == "attached")
    assert all(gone == 0 for *_, gone in log)  # purged before any step of the task
