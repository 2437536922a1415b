"""The event loop for one (scenario, strategy, seed): one call per step, then evaluation.

A learn task → ``learn(task, experience, request=...)`` (with the request of the same step, if any);
a request alone → ``unlearn(request)``.

The loop is explicit and small; everything a strategy does lives in the strategy, everything measured
lives in :mod:`clu.evaluation`.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator, Sequence

import torch
from avalanche.core import BasePlugin

from clu import seeding
from clu.data.avalanche_bridge import learn_experiences
from clu.data.base import Dataset
from clu.evaluation import StreamState, evaluate
from clu.events import Step
from clu.models import build_model
from clu.results import EventRecord
from clu.scenario import ScenarioSpec, task_classes
from clu.strategies import STRATEGIES, StrategyChoice
from clu.strategies.base import CLUStrategy, RunContext
from clu.summary import with_gaps


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
) -> CLUStrategy:
    """The strategy with a freshly initialised model (the same initial weights for every strategy)."""
    set_determinism(seed)
    model = build_model(scenario.model, data.input_shape, data.num_classes).to(device)
    ctx = RunContext(
        data=data,
        seed=seed,
        epochs=scenario.training.epochs,
        batch_size=scenario.training.batch_size,
        buffer_size=scenario.training.buffer_size,
        task_aware=scenario.setting == "task_aware",
        device=device,
        class_tasks=tuple(task_classes(scenario.split, data.num_classes, seed)),
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
    oracle: Sequence[EventRecord] | None = None,
) -> Iterator[EventRecord]:
    """Walk ``steps[start:]``; yield one record per step. ``oracle`` records give gaps and KL."""
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
        t0 = time.perf_counter()
        if step.learn is not None:
            strategy.learn(step.learn, exp_of[step.index], request=step.unlearn)
        elif step.unlearn is not None:
            strategy.unlearn(step.unlearn)
        elapsed = time.perf_counter() - t0
        state.apply(step)
        ref = oracle[k] if oracle is not None else None
        strategy.model.eval()
        values, per_task, probs = evaluate(
            strategy.logits, data, state, step, device=device, seed=seed,
            oracle_forget_probs=ref.forget_probs if ref is not None else None,
        )
        strategy.model.train()
        if ref is not None:
            values = with_gaps(values, ref.values)
        yield EventRecord(step.index, step.kind, values, per_task, elapsed, probs)


OnEvent = Callable[[EventRecord, CLUStrategy, int], None]
