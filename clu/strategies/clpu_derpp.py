"""``clpu_derpp``: CLPU with DER++ (task-aware setting only).

Permanently learned (R) tasks go into the main model with DER++ (CE + α·MSE to stored logits + β·CE on a
second buffer batch). A temporarily learned (T) task gets a side model of its own (a copy of the main
model, fine-tuned on that task alone); predictions for its samples come from the side model. Forgetting a
T task (F) drops its side model and its buffer — exact by construction. R on a T task drops the side model
and learns the task into the main model.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from clu.events import LearnTask, UnlearnRequest
from clu.strategies.base import CLUStrategy
from clu.strategies.configs import CLPUConfig
from clu.update import FastTerm, cross_entropy


class CLPUDERPP(CLUStrategy):
    name = "clpu_derpp"
    cfg: CLPUConfig
    uses_buffer = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sides: dict[int, nn.Module] = {}
        """Side model per temporarily learned task."""
        self.logits_by_id: dict[int, Tensor] = {}
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

    def learn(self, task: LearnTask, experience: Any, request: UnlearnRequest | None = None) -> None:
        if request is not None:
            self.unlearn(request)
        if task.mode == "T":
            self._train_side(task)
            return
        self.sides.pop(task.task_id, None)  # R on a T task: it becomes permanent in the main model
        self.train_task(experience)

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
        z = torch.stack([self.logits_by_id[int(i)] for i in ids]).to(self.device)
        mse = nn.functional.mse_loss(self.model(x), z)
        return self.cfg.alpha * mse + self.cfg.beta * self.ce(self.buffer_batch())

    def learn_iteration(self, x: Tensor, y: Tensor) -> None:
        self.step([FastTerm(lambda: self.learn_loss(x, y))], self.derpp_replay, order="joint")

    def on_task_end(self, ids: Tensor) -> None:
        """Store the logits of the samples that just entered the buffer; drop those of evicted ones."""
        missing = [i for i in self.buffer.ids() if i not in self.logits_by_id]
        if missing:
            with torch.no_grad():
                self.model.eval()
                z = self.model(self.batch(torch.tensor(missing))[0]).cpu()
                self.model.train()
            self.logits_by_id.update(zip(missing, z))
        kept = set(self.buffer.ids())
        self.logits_by_id = {i: v for i, v in self.logits_by_id.items() if i in kept}

    # -- unlearning: drop the side model and its data --------------------------------------------------

    def forget(self, request: UnlearnRequest) -> None:
        if request.target_task is not None:
            self.sides.pop(request.target_task, None)
        for i in request.sample_ids:
            self.logits_by_id.pop(i, None)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "sides": {t: m.state_dict() for t, m in self.sides.items()},
            "logits_by_id": {i: v for i, v in self.logits_by_id.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.sides = {}
        for t, sd in state["sides"].items():
            side = copy.deepcopy(self.model)
            side.load_state_dict(sd)
            self.sides[int(t)] = side
        self.logits_by_id = {int(i): v for i, v in state["logits_by_id"].items()}
