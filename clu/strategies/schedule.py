"""Learning-rate handling for an unlearning phase: a cosine decay over its iterations, restored after."""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def phase_lr(optimizer: torch.optim.Optimizer, lr: float) -> Iterator["CosineLR"]:
    """Use ``lr`` (cosine-decayed by the yielded schedule) inside the block; restore the old rates after."""
    old = [g["lr"] for g in optimizer.param_groups]
    sched = CosineLR(optimizer, lr)
    try:
        yield sched
    finally:
        for g, v in zip(optimizer.param_groups, old):
            g["lr"] = v


class CosineLR:
    def __init__(self, optimizer: torch.optim.Optimizer, lr: float) -> None:
        self.optimizer = optimizer
        self.lr = lr
        self.set(0, 1)

    def set(self, t: int, total: int) -> None:
        """Learning rate for iteration ``t`` of ``total``: lr · (1 + cos(π t / total)) / 2."""
        value = self.lr * (1 + math.cos(math.pi * t / max(total, 1))) / 2
        for g in self.optimizer.param_groups:
            g["lr"] = value
