"""The unlearning phase's learning rate: cosine-decayed (clu.update.cosine_coefficient), restored after."""

from __future__ import annotations

import pytest
import torch

from clu.strategies.schedule import phase_lr
from clu.update import cosine_coefficient


def test_phase_lr_follows_the_cosine_and_restores_the_old_rate():
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.05)
    with phase_lr(opt, 0.01) as set_lr:
        assert opt.param_groups[0]["lr"] == 0.01  # before the first iteration
        for t in range(4):
            set_lr(t, 4)
            assert opt.param_groups[0]["lr"] == cosine_coefficient(0.01, t, 4)
        assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * (1 + (-(2**0.5) / 2)) / 2)
        set_lr(0, 0)  # a zero-length phase is no error
    assert opt.param_groups[0]["lr"] == 0.05
