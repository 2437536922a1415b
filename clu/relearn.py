"""The relearning attack (DESIGN §8 ``Relearn_FA``): how fast forgotten data comes back.

After a request (and at the end of the stream) a throw-away copy of the model is fine-tuned on a small seeded
part of D_U* and its accuracy on the rest of D_U* is ``Relearn_FA``. A model that only hid the data (its
features still there) relearns it from a few samples; the oracle, which never saw it, does not; the oracle's
value is the target. The copy is discarded: the run's model, optimizer and random streams are untouched. Its
own randomness (which samples, in what order) comes from :func:`relearn_rng`, a function of the scenario seed
and the event only, so every strategy and the oracle are attacked with the same samples in the same order.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from clu.data.base import Dataset
from clu.specs import EvaluationSpec

__all__ = ["Relearn", "relearn_fa", "relearn_rng", "split_forgotten", "task_head"]

Head = Callable[[Tensor, Tensor], Tensor]
"""(raw outputs, labels) → logits: the task-aware head mask (task ids are known at test time), or identity."""

_TAG = 0x2E1EA2
"""Fixed tag of the attack's stream (part of the derivation: never change)."""


@dataclass(frozen=True)
class Relearn:
    """The attack's settings for one run (the scenario's ``[evaluation]`` table and seed)."""

    fraction: float
    """Part of D_U* fine-tuned on (at least one sample, at most all but one)."""
    epochs: int
    lr: float
    batch_size: int
    seed: int
    """The scenario seed: with the event step it fixes the samples and their order."""

    @classmethod
    def of(cls, evaluation: EvaluationSpec, batch_size: int, seed: int) -> Relearn | None:
        """The attack of a scenario, or None when its ``relearn_fraction`` is 0 (off)."""
        if evaluation.relearn_fraction <= 0:
            return None
        return cls(evaluation.relearn_fraction, evaluation.relearn_epochs, evaluation.relearn_lr, batch_size, seed)


def relearn_rng(seed: int, step: int) -> np.random.Generator:
    """The attack's own stream at event ``step`` of a run with scenario seed ``seed`` (no run stream is drawn)."""
    return np.random.default_rng(np.random.SeedSequence([seed, _TAG, step]))


def split_forgotten(forgotten: Sequence[int], fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The sorted ids fine-tuned on and the sorted ids measured; both empty with fewer than two ids."""
    ids = np.asarray(sorted(forgotten), dtype=np.int64)
    if len(ids) < 2:
        return ids[:0], ids[:0]
    n_fit = min(max(1, round(fraction * len(ids))), len(ids) - 1)
    perm = rng.permutation(len(ids))
    return np.sort(ids[perm[:n_fit]]), np.sort(ids[perm[n_fit:]])


def task_head(class_tasks: Sequence[Sequence[int]], num_classes: int, device: torch.device) -> Head:
    """The task-aware head: each sample's logits masked to the classes of its task (as the strategies mask)."""
    mask = torch.zeros(num_classes, num_classes, dtype=torch.bool)
    for classes in class_tasks:
        idx = torch.tensor(list(classes))
        mask[idx.unsqueeze(1), idx.unsqueeze(0)] = True
    mask = mask.to(device)
    return lambda out, y: out.masked_fill(~mask[y], -1e4)


def _identity(out: Tensor, _y: Tensor) -> Tensor:
    return out


def relearn_fa(model: nn.Module, data: Dataset, forgotten: Sequence[int], attack: Relearn, step: int,
               device: torch.device, head: Head | None = None) -> float | None:
    """``Relearn_FA`` at event ``step``: accuracy on the measured part of D_U* (``forgotten``) of a copy of
    ``model`` fine-tuned (plain SGD, cross-entropy, train mode) on the other part. None with fewer than two
    forgotten samples. ``model`` itself is only read."""
    head = head or _identity
    rng = relearn_rng(attack.seed, step)
    fit, rest = split_forgotten(forgotten, attack.fraction, rng)
    if not len(rest):
        return None
    clone = copy.deepcopy(model).train()
    opt = torch.optim.SGD(clone.parameters(), lr=attack.lr)
    for _ in range(attack.epochs):
        order = fit[rng.permutation(len(fit))]
        for i in range(0, len(order), attack.batch_size):
            x, y = _batch(data, order[i : i + attack.batch_size], device)
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(head(clone(x), y), y).backward()
            opt.step()
    clone.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(rest), 1024):
            x, y = _batch(data, rest[i : i + 1024], device)
            correct += int((head(clone(x), y).argmax(1) == y).sum())
    return correct / len(rest)


def _batch(data: Dataset, ids: np.ndarray, device: torch.device) -> tuple[Tensor, Tensor]:
    x, y = data.train_batch(ids)
    return x.to(device), y.to(device)
