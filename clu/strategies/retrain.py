"""The exact-unlearning oracles: retrain from scratch without the forgotten data after every event.

``retrain`` is *the* oracle every gap is measured against: joint training on all retained data (DESIGN
§7). ``retrain_stream`` replays the stream so far with the ER learner, minus the forgotten samples.
Both restart from the same initial weights and batch-order seed each time, so their model after an event
is a function of the retained data and the seed alone.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

import numpy as np

from clu.data.avalanche_bridge import experience_of
from clu.events import LearnTask, UnlearnRequest
from clu.strategies.base import CLUStrategy
from clu.strategies.er import ReplayLearner
from clu.strategies.registry import register_strategy


class _FromScratch(CLUStrategy):
    """Keeps the initial state; ``restart()`` goes back to it (weights, optimizer, buffer, batch order)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init_model = copy.deepcopy(self.model.state_dict())

    def restart(self) -> None:
        self.model.load_state_dict(self._init_model)
        self.optimizer.state = defaultdict(dict)
        self.buffer.remove(list(self.buffer.ids()))
        self.buffer._seen = 0
        self.gen.manual_seed(self.ctx.seed)
        self.np_rng = np.random.default_rng([self.ctx.seed, 2])


@register_strategy("retrain", "the oracle: joint training from scratch on all retained data after every event")
class Retrain(_FromScratch):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retained: set[int] = set()

    def learn(self, task: LearnTask, experience: Any) -> None:
        self.retained.update(task.sample_ids)
        self._retrain()

    def forget(self, request: UnlearnRequest, *, then_learn: bool) -> None:
        self.retained.difference_update(request.sample_ids)
        if not then_learn:  # else the learn task of the same step retrains anyway
            self._retrain()

    def _retrain(self) -> None:
        self.restart()
        self.train(experience_of(self.ctx.data, sorted(self.retained)))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "retained": sorted(self.retained)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.retained = set(state["retained"])


@register_strategy("retrain_stream", "oracle variant: replay the stream so far with ER, minus the forgotten data")
class RetrainStream(_FromScratch, ReplayLearner):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tasks: list[list[int]] = []
        """The stream so far: each learn task's retained ids (forgotten ids are deleted, never kept)."""

    def learn(self, task: LearnTask, experience: Any) -> None:
        self.tasks.append(list(task.sample_ids))
        self._replay()

    def forget(self, request: UnlearnRequest, *, then_learn: bool) -> None:
        gone = set(request.sample_ids)
        self.tasks = [[i for i in ids if i not in gone] for ids in self.tasks]
        if not then_learn:
            self._replay()

    def _replay(self) -> None:
        self.restart()
        for ids in self.tasks:
            if ids:
                self.train(experience_of(self.ctx.data, ids))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "tasks": self.tasks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.tasks = [list(t) for t in state["tasks"]]
