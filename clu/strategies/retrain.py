"""The exact-unlearning oracles: retrain from scratch without the forgotten data after every event.

``retrain`` is *the* oracle every gap is measured against: joint training on all retained data (DESIGN
§7). ``retrain_stream`` replays the stream so far with the ER learner, minus the forgotten samples.
Both restart from the same initial weights and batch-order seed each time, so their model after an event
is a function of the retained data and the seed alone. A request attached to a learn task is folded
into that task's retraining (one retraining per step).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

from clu import seeding
from clu.data.avalanche_bridge import experience_of
from clu.events import LearnTask, UnlearnRequest
from clu.replay import ReplayBuffer
from clu.strategies.base import CLUStrategy
from clu.strategies.er import ReplayLearner


class _FromScratch(CLUStrategy):
    """Keeps the initial state; ``restart()`` goes back to it (weights, optimizer, buffer, batch order)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init_model = copy.deepcopy(self.model.state_dict())

    def restart(self) -> None:
        self.model.load_state_dict(self._init_model)
        self.optimizer.state = defaultdict(dict)
        self.buffer = ReplayBuffer(self.ctx.buffer_size, self.buffer_policy())
        self.gen = seeding.batch_order(self.ctx.seed)
        self.np_rng = seeding.buffer_policy(self.ctx.seed)


class Retrain(_FromScratch):
    name = "retrain"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retained_ids: set[int] = set()
        """Every learned id not forgotten."""

    def learn(self, task: LearnTask, experience: Any, request: UnlearnRequest | None = None) -> None:
        if request is not None:
            self.purge(request)
            self.retained_ids.difference_update(request.sample_ids)
        self.retained_ids.update(task.sample_ids)
        self._retrain()

    def forget(self, request: UnlearnRequest) -> None:
        self.retained_ids.difference_update(request.sample_ids)
        self._retrain()

    def _retrain(self) -> None:
        self.restart()
        self.train_task(experience_of(self.ctx.data, sorted(self.retained_ids)))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "retained_ids": sorted(self.retained_ids)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.retained_ids = set(state["retained_ids"])


class RetrainStream(_FromScratch, ReplayLearner):
    name = "retrain_stream"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task_sample_ids: list[list[int]] = []
        """The stream so far: each learn task's retained ids (forgotten ids are deleted, never kept)."""

    def learn(self, task: LearnTask, experience: Any, request: UnlearnRequest | None = None) -> None:
        if request is not None:
            self.purge(request)
            self._drop(request)
        self.task_sample_ids.append(list(task.sample_ids))
        self._replay()

    def forget(self, request: UnlearnRequest) -> None:
        self._drop(request)
        self._replay()

    def _drop(self, request: UnlearnRequest) -> None:
        gone = set(request.sample_ids)
        self.task_sample_ids = [[i for i in ids if i not in gone] for ids in self.task_sample_ids]

    def _replay(self) -> None:
        self.restart()
        for ids in self.task_sample_ids:
            if ids:
                self.train_task(experience_of(self.ctx.data, ids))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "task_sample_ids": self.task_sample_ids}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.task_sample_ids = [list(t) for t in state["task_sample_ids"]]
