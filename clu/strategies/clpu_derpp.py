"""``clpu_derpp``: CLPU with DER++ (Liu et al., CoLLAs 2022; task-aware setting only).

- **R** (learn permanently): the main model learns the task with DER++ (CE + α·MSE to stored logits +
  β·CE on a second buffer batch); the task's samples are offered to the class-balanced buffer.
- **T** (learn temporarily): a side model (a copy of the main model) is fine-tuned on the task alone and
  answers that task's samples. The task keeps a memory of its own, outside the buffer (CLPU's per-task
  episodic memory): a class-balanced pick of up to ``buffer_size`` of its samples, with the side model's
  logits. The main model and the buffer never see the task.
- **F** (forget a T task): drop its side model, its memory and their logits — exact by construction.
- **R on a T task** (CLPU's merge): distil the side model into the main model from the task's memory
  (α·MSE to the side's stored logits + β·CE, as in CLPU's ``finally_learn``) with the usual DER++ replay
  on the buffer, for as many steps as learning the task would take; then drop the side model. The memory
  joins the buffer like an R task's samples, keeping the side's logits as its DER++ targets (CLPU keeps
  them too). The task's full data is never used again.

Side models are in eval mode except while they are trained. Random draws (side batches, memory
admission) come from the strategy's shared streams.
"""

from __future__ import annotations

import copy
import math
from itertools import islice
from typing import Any

import torch
from torch import Tensor, nn

from clu.events import LearnTask, UnlearnRequest
from clu.replay import ReplayBuffer
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
        """Side model per temporarily learned task (in eval mode)."""
        self.memory: dict[int, ReplayBuffer] = {}
        """Episodic memory per temporarily learned task (kept out of the buffer)."""
        self.logits_by_id: dict[int, Tensor] = {}
        """DER++ targets of every buffered or memorised id: the main model's logits when it entered the
        buffer, or the side model's for a T task's memory."""
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
                side_out = self._task_head(side(x[sel]), y[sel])
                out = out.index_put((sel.nonzero().squeeze(1),), side_out)
        return out

    def _task_head(self, out: Tensor, y: Tensor) -> Tensor:
        """``out`` masked to the classes of each sample's task."""
        return out.masked_fill(~self._head_mask[y], -1e4)  # type: ignore[index]

    # -- learning --------------------------------------------------------------------------------------

    def learn(self, task: LearnTask, experience: Any, request: UnlearnRequest | None = None) -> None:
        if request is not None:
            self.unlearn(request)
        if task.mode == "T":
            self.learn_temporarily(task)
        elif task.task_id in self.sides:
            self.merge(task)
        else:
            self.train_task(experience)

    def learn_temporarily(self, task: LearnTask) -> None:
        """T: train a side model on the task alone; memorise some of its samples with the side's logits."""
        side = self._train_side(task)
        ids = torch.tensor(task.sample_ids)
        memory = ReplayBuffer(self.ctx.buffer_size, self.buffer_policy())
        memory.add(ids.numpy(), self.ctx.data.train_labels[ids.numpy()], self.np_rng)
        self._store_logits(side, memory.ids())
        self.sides[task.task_id] = side
        self.memory[task.task_id] = memory
        self.known_classes.update(task.classes)

    def _train_side(self, task: LearnTask) -> nn.Module:
        """A copy of the main model fine-tuned (CE on its task's head) on ``task``; returned in eval mode."""
        side = copy.deepcopy(self.model).train()
        cfg = self.cfg
        opt = torch.optim.SGD(side.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        ids = torch.tensor(task.sample_ids)
        for _ in range(self.train_epochs):
            for b in self.minibatches(ids):
                x, y = self.batch(b)
                opt.zero_grad(set_to_none=True)
                cross_entropy(self._task_head(side(x), y), y).backward()
                opt.step()
        return side.eval()

    def merge(self, task: LearnTask) -> None:
        """R on a T task: distil its side model into the main model from its memory, then drop the side."""
        memory = self.memory[task.task_id]
        if not len(memory):  # buffer_size 0: nothing to distil from; the side model keeps answering the task
            return
        del self.sides[task.task_id], self.memory[task.task_id]  # its logits stay in logits_by_id
        ids = torch.tensor(memory.ids())
        n_steps = self.train_epochs * math.ceil(len(task.sample_ids) / self.train_mb_size)
        self.model.train()
        for b in islice(self.cycle(ids), n_steps):
            x, y = self.batch(b)
            self.merge_iteration(x, y, self.stored_logits(b))
        self.buffer.add(ids.numpy(), self.ctx.data.train_labels[ids.numpy()], self.np_rng)
        self.on_task_end(ids)

    def merge_iteration(self, x: Tensor, y: Tensor, z: Tensor) -> None:
        """One merge step: α · MSE(f(x), side logits z) + β · CE(f(x), y) on a memory batch, plus DER++ replay."""
        def distil() -> Tensor:
            out = self.model(x)
            mse = nn.functional.mse_loss(out, z)
            return self.cfg.alpha * mse + self.cfg.beta * cross_entropy(self._task_head(out, y), y)

        self.step([FastTerm(distil)], self.derpp_replay, order="joint")

    def derpp_replay(self) -> Tensor | None:
        """α · MSE(f(x_b1), stored logits) + β · CE(f(x_b2), y_b2) on two buffer batches."""
        if not len(self.buffer):
            return None
        ids = self.buffer.sample(self.train_mb_size, self.gen)
        x, _ = self.batch(ids)
        mse = nn.functional.mse_loss(self.model(x), self.stored_logits(ids))
        return self.cfg.alpha * mse + self.cfg.beta * self.ce(self.buffer_batch())

    def learn_iteration(self, x: Tensor, y: Tensor) -> None:
        self.step([FastTerm(lambda: self.learn_loss(x, y))], self.derpp_replay, order="joint")

    def on_task_end(self, ids: Tensor) -> None:
        """Store the main model's logits of the samples that just entered the buffer; drop those evicted."""
        self._store_logits(self.model, [i for i in self.buffer.ids() if i not in self.logits_by_id])
        self._drop_unheld_logits()

    # -- stored logits -----------------------------------------------------------------------------------

    def stored_logits(self, ids: Tensor) -> Tensor:
        return torch.stack([self.logits_by_id[int(i)] for i in ids]).to(self.device)

    @torch.no_grad()
    def _store_logits(self, model: nn.Module, ids: list[int] | tuple[int, ...]) -> None:
        """Raw logits of ``model`` in eval mode on ``ids`` (the model is left in the mode it was in)."""
        if not ids:
            return
        was_training = model.training
        model.eval()
        z = model(self.batch(torch.tensor(ids))[0]).cpu()
        model.train(was_training)
        self.logits_by_id.update(zip((int(i) for i in ids), z))

    def _drop_unheld_logits(self) -> None:
        held = set(self.buffer.ids()).union(*(m.ids() for m in self.memory.values()))
        self.logits_by_id = {i: v for i, v in self.logits_by_id.items() if i in held}

    # -- unlearning: drop the side model, its memory and their logits -----------------------------------

    def forget(self, request: UnlearnRequest) -> None:
        if request.target_task is not None:
            self.sides.pop(request.target_task, None)
            self.memory.pop(request.target_task, None)
        for memory in self.memory.values():
            memory.remove(request.sample_ids)
        self._drop_unheld_logits()

    # -- checkpointing -----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "sides": {t: m.state_dict() for t, m in self.sides.items()},
            "memory": {t: m.state_dict() for t, m in self.memory.items()},
            "logits_by_id": dict(self.logits_by_id),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.sides = {}
        for t, sd in state["sides"].items():
            side = copy.deepcopy(self.model)
            side.load_state_dict(sd)
            self.sides[int(t)] = side.eval()
        self.memory = {}
        for t, sd in state["memory"].items():
            self.memory[int(t)] = ReplayBuffer(self.ctx.buffer_size, self.buffer_policy())
            self.memory[int(t)].load_state_dict(sd)
        self.logits_by_id = {int(i): v for i, v in state["logits_by_id"].items()}
