"""``clpu_derpp``: CLPU with DER++ (task-aware setting only).

Permanently learned (R) tasks go into the main model with DER++ (CE + α·MSE to stored logits + β·CE on a
second buffer batch). A temporarily learned (T) task gets a side model of its own (a copy of the main
model, fine-tuned on that task alone); predictions for its samples come from the side model. Forgetting a
T task (F) drops its side model and its buffer — exact by construction. R on a T task drops the side model
and learns the task into the main model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from clu.config import check
from clu.events import LearnTask, UnlearnRequest
from clu.strategies.base import CLUStrategy, StrategyConfig
from clu.strategies.registry import register_strategy
from clu.update import FastTerm, cross_entropy


@dataclass(frozen=True)
class CLPUConfig(StrategyConfig):
    """DER++ weights for the main model."""

    alpha: float = 0.3
    """Weight of the logit-matching (MSE) replay term."""
    beta: float = 0.5
    """Weight of the label (CE) replay term."""

    def validate(self) -> None:
        super().validate()
        check(self.alpha >= 0, "alpha", f"must be >= 0, got {self.alpha}")
        check(self.beta >= 0, "beta", f"must be >= 0, got {self.beta}")


@register_strategy("clpu_derpp", "task-aware CLPU: DER++ main model + one side model per temporary task", task_aware_only=True)
class CLPUDERPP(CLUStrategy):
    config_class = CLPUConfig
    cfg: CLPUConfig
    uses_buffer = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sides: dict[int, nn.Module] = {}
        """Side model per temporarily learned task."""
        self.stored_logits: dict[int, Tensor] = {}
        """DER++: logits of each buffered id when it entered the buffer."""
        self.task_of_class = {c: t for t, cs in enumerate(self.ctx.class_tasks) for c in cs}

    # -- routing: a sample of a T task is answered by that task's side model -------------------------

    def logits(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        out = super().logits(x, y)
        if y is None or not self.sides:
            return out
        tasks = torch.tensor([self.task_of_class.get(int(c), -1) for c in y.tolist()], device=out.device)
        for task, side in self.sides.items():
            sel = tasks == task
            if bool(sel.any()):
                side_out = side(x[sel]).masked_fill(~self._head_mask[y[sel]], -1e4)  # type: ignore[index]
                out = out.index_put((sel.nonzero().squeeze(1),), side_out)
        return out

    # -- learning --------------------------------------------------------------------------------------

    def learn(self, task: LearnTask, experience: Any) -> None:
        if task.mode == "T":
            self._train_side(task)
            return
        self.sides.pop(task.task_id, None)  # R on a T task: it becomes permanent in the main model
        self.train(experience)

    def _train_side(self, task: LearnTask) -> None:
        side = copy.deepcopy(self.model).train()
        opt = torch.optim.SGD(side.parameters(), lr=self.cfg.lr, momentum=self.cfg.momentum, weight_decay=self.cfg.weight_decay)
        ids = torch.tensor(task.sample_ids)
        for _ in range(self.train_epochs):
            for b in self.minibatches(ids):
                x, y = self.batch(b)
                opt.zero_grad(set_to_none=True)
                loss = cross_entropy(side(x).masked_fill(~self._head_mask[y], -1e4), y)  # type: ignore[index]
                loss.backward()
                opt.step()
        self.sides[task.task_id] = side
        self.known_classes.update(task.classes)

    def derpp_replay(self) -> Tensor | None:
        """α · MSE(f(x_b1), stored logits) + β · CE(f(x_b2), y_b2) on two buffer batches."""
        if not len(self.buffer):
            return None
        ids = self.buffer.sample(self.train_mb_size, self.gen)
        x, y = self.batch(ids)
        z = torch.stack([self.stored_logits[int(i)] for i in ids]).to(self.device)
        mse = nn.functional.mse_loss(self.model(x), z)
        return self.cfg.alpha * mse + self.cfg.beta * self.ce(self.buffer_batch())

    def learn_iteration(self, x: Tensor, y: Tensor) -> None:
        self.step([FastTerm(lambda: self.learn_loss(x, y))], self.derpp_replay, order="joint")

    def _after_training_exp(self, **kwargs: Any) -> None:
        super()._after_training_exp(**kwargs)  # adds to the buffer
        missing = [i for i in self.buffer.ids() if i not in self.stored_logits]
        if missing:
            with torch.no_grad():
                self.model.eval()
                z = self.model(self.batch(torch.tensor(missing))[0]).cpu()
                self.model.train()
            self.stored_logits.update(zip(missing, z))
        kept = set(self.buffer.ids())
        self.stored_logits = {i: v for i, v in self.stored_logits.items() if i in kept}

    # -- unlearning: drop the side model and its data --------------------------------------------------

    def forget(self, request: UnlearnRequest, *, then_learn: bool) -> None:
        if request.target_task is not None:
            self.sides.pop(request.target_task, None)
        for i in request.sample_ids:
            self.stored_logits.pop(i, None)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "sides": {t: m.state_dict() for t, m in self.sides.items()},
            "stored_logits": {i: v for i, v in self.stored_logits.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.sides = {}
        for t, sd in state["sides"].items():
            side = copy.deepcopy(self.model)
            side.load_state_dict(sd)
            self.sides[int(t)] = side
        self.stored_logits = {int(i): v for i, v in state["stored_logits"].items()}
