"""Avalanche's evaluators, schedulers and plugins on every registered strategy give true numbers (issue 16).

Each strategy runs the tiny scenario once (task-aware ones on the task-aware variant; ``naive`` on both) with
Avalanche's ``EvaluationPlugin`` (accuracy, loss, forgetting, timing, RAM), an ``LRSchedulerPlugin``, a user
plugin adding an L2 term to the loss and an independent probe. After every event ``strategy.eval`` runs on the
learn experiences seen so far. The evaluator's training figures must equal the probe's on the same batches, its
evaluation figures clu's own accuracy (:func:`clu.evaluation.outputs`, what TA and RA are computed with) on the
same samples; the scheduler must set the learning rate of every learn step and the L2 term must be
differentiated by every learn step.
"""

from __future__ import annotations

import math
import time
import tomllib
import warnings
from collections import defaultdict
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import (
    accuracy_metrics,
    forgetting_metrics,
    loss_metrics,
    ram_usage_metrics,
    timing_metrics,
)
from avalanche.training.plugins import EvaluationPlugin, GEMPlugin, LRSchedulerPlugin, ReplayPlugin

from clu.config import ConfigError
from clu.data import load_dataset
from clu.data.avalanche_bridge import experience_of, learn_experiences
from clu.driver import build_strategy, run_events
from clu.evaluation import StreamState, outputs
from clu.events import steps as group_steps
from clu.scenario import events_for, scenario_from_dict
from clu.strategies import STRATEGIES, StrategyChoice, strategy_config
from clu.strategies.base import check_plugins
from tiny import TINY

CPU = torch.device("cpu")
torch.set_num_threads(1)
AWARE = TINY.replace('name = "tiny"', 'name = "tiny-aware"\nsetting = "task_aware"').replace(
    '[[schedule.rules]]\nkind = "class"\nstart_after = 2\n',
    '[schedule]\nsequence = [[0, "R"], [1, "T"], [2, "R"], [1, "F"]]\n',
).replace('class_order = "natural"', 'tasks = [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]')
"""CLPU's protocol on 3 task-labelled tasks (task labels 0, 1, 2 reach ``mb_task_id``)."""
GAMMA = 0.97
L2 = 1e-4
CASES = [(n, e.task_aware_only) for n, e in STRATEGIES.items()] + [("naive", True)]


class Probe(SupervisedPlugin):
    """Independent figures on the batches the template shows its plugins."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch_acc: list[float] = []
        self.epoch_loss: list[float] = []
        self.lrs: list[tuple[float, float]] = []
        """(lr at a learn step's update, the scheduler's expected lr) per training iteration."""
        self.bad_task_ids = 0
        self.t0 = self.t1 = 0.0
        self._hit = self._n = 0
        self._loss = 0.0
        self._i = 0
        self._lr0 = 0.0
        self._in_iteration = False

    def before_training_exp(self, strategy: Any, **kw: Any) -> None:
        self._i, self._lr0 = 0, strategy.optimizer.param_groups[0]["lr"]

    def before_training_epoch(self, strategy: Any, **kw: Any) -> None:
        self._hit = self._n = 0
        self._loss = 0.0
        self.t0 = time.perf_counter()

    def before_training_iteration(self, strategy: Any, **kw: Any) -> None:
        self._in_iteration = True
        self.bad_task_ids += int(not set(strategy.mb_task_id.tolist()) <= set(strategy.experience.dataset.targets_task_labels))

    def before_update(self, strategy: Any, **kw: Any) -> None:
        if self._in_iteration:
            self.lrs.append((strategy.optimizer.param_groups[0]["lr"], self._lr0 * GAMMA**self._i))

    def after_training_iteration(self, strategy: Any, **kw: Any) -> None:
        out, y = strategy.mb_output.detach(), strategy.mb_y
        self._hit += int((out.argmax(1) == y).sum())
        self._n += len(y)
        # the loss Avalanche's own loop would hold: CE on the batch plus the user plugin's term
        self._loss += (float(F.cross_entropy(out, y)) + strategy.l2_term) * len(y)
        self._in_iteration = False
        self._i += 1

    def after_training_epoch(self, strategy: Any, **kw: Any) -> None:
        self.epoch_acc.append(self._hit / self._n)
        self.epoch_loss.append(self._loss / self._n)


class EpochEnd(SupervisedPlugin):
    """Placed after the evaluator: the end of the window its epoch timer can have measured."""

    def __init__(self, probe: Probe) -> None:
        super().__init__()
        self.probe = probe
        self.windows: list[float] = []

    def after_training_epoch(self, strategy: Any, **kw: Any) -> None:
        self.windows.append(time.perf_counter() - self.probe.t0)


class AddL2(SupervisedPlugin):
    """A user plugin that changes the loss; counts the learn steps that differentiate its term."""

    def __init__(self) -> None:
        super().__init__()
        self.added = self.differentiated = 0

    def before_backward(self, strategy: Any, **kw: Any) -> None:
        term = L2 * sum(p.pow(2).sum() for p in strategy.model.parameters())
        term.register_hook(self._count)
        strategy.l2_term = float(term.detach())
        strategy.loss = strategy.loss + term
        self.added += 1

    def _count(self, grad: torch.Tensor) -> None:
        self.differentiated += 1


def _metric(metrics: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k.startswith(prefix)}


def _curve(ev: EvaluationPlugin, prefix: str) -> list[float]:
    """Every value of the metrics named ``prefix...`` (one per task label), in the order emitted."""
    points = [(x, i, v) for k, (xs, vs) in ev.get_all_metrics().items() if k.startswith(prefix)
              for i, (x, v) in enumerate(zip(xs, vs))]
    return [v for _, _, v in sorted(points, key=lambda p: (p[0], p[1]))]


def _exp_value(metrics: dict[str, Any], name: str, exp: Any) -> Any:
    """The evaluation value of ``name`` on ``exp`` (its only key, whatever task part Avalanche adds)."""
    keys = [k for k in metrics if k.startswith(f"{name}/eval_phase/") and k.endswith(f"/Exp{exp.current_experience:03d}")]
    assert len(keys) == 1, (name, exp.current_experience, sorted(metrics))
    return metrics[keys[0]]


@pytest.mark.parametrize(("name", "aware"), CASES, ids=[f"{n}{'-aware' if a else ''}" for n, a in CASES])
def test_avalanche_plugins_see_true_numbers(name: str, aware: bool) -> None:
    spec = scenario_from_dict(tomllib.loads(AWARE if aware else TINY), "tiny.toml")
    data = load_dataset(spec.data)
    steps = group_steps(events_for(spec, spec.seed))
    probe, l2 = Probe(), AddL2()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = EvaluationPlugin(
            accuracy_metrics(epoch=True, experience=True, stream=True), loss_metrics(epoch=True, experience=True),
            forgetting_metrics(experience=True), timing_metrics(epoch=True), ram_usage_metrics(every=0.002, epoch=True),
            loggers=[],
        )
    end = EpochEnd(probe)
    overrides = {"unlearn_iters": 5} if "unlearn_iters" in {f for f in STRATEGIES[name].config_class.__dataclass_fields__} else {}
    strategy = build_strategy(StrategyChoice(name, name, strategy_config(name, overrides)), spec, data, spec.seed, CPU,
                              plugins=[l2, probe, ev, end])
    strategy.plugins.append(LRSchedulerPlugin(torch.optim.lr_scheduler.StepLR(strategy.optimizer, 1, GAMMA),
                                              step_granularity="iteration"))
    exps = learn_experiences(data, [s.learn for s in steps if s.learn is not None], spec.setting == "task_aware")
    state, seen, train_exp, initial = StreamState(), [], [None], {}
    strategy.plugins.append(type("TrainExp", (SupervisedPlugin,), {
        "before_training_exp": lambda self, s, **kw: train_exp.__setitem__(0, s.experience.current_experience)})())

    for step, rec in zip(steps, run_events(strategy, steps, data, seed=spec.seed)):
        state.apply(step)
        if step.learn is not None:
            seen.append(exps[len(seen)])
        strategy.eval(seen)
        last = ev.get_last_metrics()
        for exp in seen:  # clu's own accuracy and an independent CE on the same samples
            ids = torch.tensor(sorted(exp.dataset.sample_ids))
            with torch.no_grad():
                own = outputs(strategy.logits, data.x_train[ids], data.y_train[ids], data, CPU)
            assert _exp_value(last, "Top1_Acc_Exp", exp) == pytest.approx(own.acc(), abs=1e-9), (step.index, exp)
            ce = -float(torch.log(torch.as_tensor(own.probs[range(len(ids)), own.labels])).mean())
            assert _exp_value(last, "Loss_Exp", exp) == pytest.approx(ce, rel=1e-4, abs=1e-5), (step.index, exp)
            k, acc = exp.current_experience, own.acc()
            if k == train_exp[0]:  # Avalanche's definition: the accuracy after training on k ...
                initial[k] = acc
            elif k in initial:  # ... minus the accuracy now
                assert _exp_value(last, "ExperienceForgetting", exp) == pytest.approx(initial[k] - acc, abs=1e-9)
    retained = experience_of(data, sorted(state.retained_ids))
    strategy.eval([retained])  # all retained train data: clu's RA after the last event
    ra = list(_metric(ev.get_last_metrics(), "Top1_Acc_Stream/eval_phase").values())
    assert ra == [pytest.approx(rec.values["RA"], abs=1e-9)]

    # training phase: every epoch, the probe's figures on the same batches
    assert probe.epoch_acc and probe.bad_task_ids == 0
    assert _curve(ev, "Top1_Acc_Epoch/train_phase") == pytest.approx(probe.epoch_acc, abs=1e-9)
    assert _curve(ev, "Loss_Epoch/train_phase") == pytest.approx(probe.epoch_loss, rel=1e-5, abs=1e-6)
    times = _curve(ev, "Time_Epoch/train_phase")
    assert len(times) == len(end.windows) and all(0 < t <= w for t, w in zip(times, end.windows))
    ram = _curve(ev, "MaxRAMUsage_Epoch/train_phase")
    assert len(ram) == len(probe.epoch_acc) and all(r >= 0 for r in ram) and max(ram) > 0
    # the scheduler sets every learn step's lr; the user's loss term is differentiated by every learn step
    assert probe.lrs and all(math.isclose(got, want, rel_tol=1e-9) for got, want in probe.lrs)
    assert l2.added == l2.differentiated == len(probe.lrs)


def test_a_plugin_the_template_cannot_serve_is_refused_by_name() -> None:
    spec = scenario_from_dict(tomllib.loads(TINY), "tiny.toml")
    data = load_dataset(spec.data)
    gem = GEMPlugin(patterns_per_experience=10, memory_strength=0.5)
    with pytest.raises(ConfigError, match="GEMPlugin implements after_backward"):
        check_plugins([gem])
    with pytest.raises(ConfigError, match="GEMPlugin"):
        build_strategy(StrategyChoice("naive", "naive", strategy_config("naive", {})), spec, data, 0, CPU, plugins=[gem])
    # a plugin that swaps the training dataloader is refused when its experience starts, by name
    strategy = build_strategy(StrategyChoice("naive", "naive", strategy_config("naive", {})), spec, data, 0, CPU,
                              plugins=[ReplayPlugin(mem_size=20)])
    steps = group_steps(events_for(spec, spec.seed))
    with pytest.raises(ConfigError, match="ReplayPlugin"):
        list(run_events(strategy, steps[:2], data, seed=0))
