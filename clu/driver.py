"""The event loop for one (scenario, strategy, seed): one call per step, then evaluation.

A learn task → ``learn(task, experience, request=...)`` (with the request of the same step, if any);
a request alone → ``unlearn(request)``.

The loop is explicit and small; everything a strategy does lives in the strategy, everything measured
lives in :mod:`clu.evaluation` (the relearning attack, on a throw-away copy, in :mod:`clu.relearn`). Each
record carries the unit's margins and per-request FA (the model's own measurements only: gaps, KL, resurfacing
and the attack against other models are joined afterwards by :mod:`clu.joint`).
"""

from __future__ import annotations

import copy
import time
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from avalanche.core import BasePlugin

from clu import seeding
from clu.data.avalanche_bridge import learn_experiences
from clu.data.base import Dataset
from clu.evaluation import StreamState, attack_margins, attack_set, evaluate, event_margins, request_fa
from clu.events import Step
from clu.models import build_model, use_channels_last
from clu.relearn import Head, Relearn, relearn_fa, task_head
from clu.results import EventRecord
from clu.scenario import ScenarioSpec, task_classes
from clu.strategies import STRATEGIES, StrategyChoice
from clu.strategies.base import CLUStrategy, RunContext


def set_determinism(seed: int) -> None:
    """Deterministic algorithms and a fixed global seed (model initialisation)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    seeding.model_init(seed)


def build_strategy(
    choice: StrategyChoice,
    scenario: ScenarioSpec,
    data: Dataset,
    seed: int,
    device: torch.device,
    plugins: Sequence[BasePlugin] = (),
    *,
    init_seed: int | None = None,
    order_seed: int | None = None,
    amp: bool = False,
) -> CLUStrategy:
    """The strategy with a freshly initialised model. ``seed`` is the scenario seed (the class order of the
    tasks); the initial weights come from ``init_seed`` and the batch order and buffer draws from ``order_seed``
    (both default to ``seed``: replica 1 of a run, where every strategy shares the initial weights). ``amp``:
    forward passes under bf16 autocast; CNNs on CUDA run channels_last."""
    set_determinism(seed if init_seed is None else init_seed)
    model = build_model(scenario.model, data.input_shape, data.num_classes).to(device)
    ctx = RunContext(
        data=data,
        seed=seed if order_seed is None else order_seed,
        epochs=scenario.training.epochs,
        batch_size=scenario.training.batch_size,
        buffer_size=scenario.training.buffer_size,
        task_aware=scenario.setting == "task_aware",
        device=device,
        class_tasks=tuple(task_classes(scenario.split, data.num_classes, seed)),
        augment=scenario.training.augment,
        amp=amp,
        channels_last=use_channels_last(scenario.model, device),
    )
    cls = STRATEGIES[choice.name].load()
    return cls(model=model, config=choice.config, context=ctx, plugins=list(plugins))


def run_events(
    strategy: CLUStrategy,
    steps: Sequence[Step],
    data: Dataset,
    *,
    seed: int,
    start: int = 0,
    relearn: Relearn | None = None,
) -> Iterator[EventRecord]:
    """Walk ``steps[start:]``; yield one record (with its margins) per step. ``seed``: the evaluation's
    (the entropy attack's draws; the unit's training seed). ``relearn``: the relearning attack, at request
    events and the last event (None: ``Relearn_FA`` is not measured)."""
    device = strategy.device
    experiences = learn_experiences(data, [s.learn for s in steps if s.learn is not None], strategy.ctx.task_aware)
    exp_of = {}
    for s in steps:
        if s.learn is not None:
            exp_of[s.index] = experiences[len(exp_of)]
    state = StreamState()
    for s in steps[:start]:
        state.apply(s)
    for k in range(start, len(steps)):
        step = steps[k]
        before = _margins_before(strategy, data, state, step) if step.unlearn is not None else None
        t0 = time.perf_counter()
        if step.learn is not None:
            strategy.learn(step.learn, exp_of[step.index], request=step.unlearn)
        elif step.unlearn is not None:
            strategy.unlearn(step.unlearn)
        elapsed = time.perf_counter() - t0
        state.apply(step)
        strategy.model.eval()
        values, per_task, probs = evaluate(strategy.logits, data, state, step, device=device, seed=seed)
        margins = event_margins(strategy.logits, data, state, probs, device, before)
        if relearn is not None and (step.unlearn is not None or k == len(steps) - 1):
            values["Relearn_FA"] = relearn_fa(strategy.model, data, sorted(state.forgotten_ids), relearn,
                                              step.index, device, _head(strategy))
        strategy.model.train()
        yield EventRecord(step.index, step.kind, values, per_task, elapsed, margins, request_fa(state, data, probs))


def _head(strategy: CLUStrategy) -> Head | None:
    """The strategy's task-aware head mask, for the attack's copy (None: task-agnostic, one head)."""
    ctx = strategy.ctx
    return task_head(ctx.class_tasks, ctx.data.num_classes, strategy.device) if ctx.task_aware else None


def _margins_before(strategy: CLUStrategy, data: Dataset, state: StreamState, step: Step) -> np.ndarray:
    """φ on the attack set after ``step`` under the model before it (the request's ``*_before`` figures)."""
    after = copy.deepcopy(state)
    after.apply(step)
    members, nonmembers = attack_set(after, data)
    strategy.model.eval()
    phi = attack_margins(strategy.logits, data, members, nonmembers, strategy.device)
    strategy.model.train()
    return phi


OnEvent = Callable[[EventRecord, CLUStrategy, int], None]
