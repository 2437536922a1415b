"""Learning-rate handling for an unlearning phase: a cosine decay over its iterations, restored after."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from clu.update import cosine_coefficient

SetLR = Callable[[int, int], None]
"""``set_lr(t, total)``: the learning rate of iteration ``t`` of ``total``."""


@contextmanager
def phase_lr(optimizer: torch.optim.Optimizer, lr: float) -> Iterator[SetLR]:
    """Use ``lr`` inside the block, cosine-decayed by the yielded ``set_lr(t, total)``
    (:func:`clu.update.cosine_coefficient`); restore the old rates after."""
    old = [g["lr"] for g in optimizer.param_groups]

    def set_lr(t: int, total: int) -> None:
        value = cosine_coefficient(lr, t, max(total, 1))
        for g in optimizer.param_groups:
            g["lr"] = value

    set_lr(0, 1)
    try:
        yield set_lr
    finally:
        for g, v in zip(optimizer.param_groups, old):
            g["lr"] = v
