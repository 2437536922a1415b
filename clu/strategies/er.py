"""``er``: experience replay with an id-keyed buffer; an unlearn request only purges the buffer.

The ER learner (each learn batch + a buffer batch, one joint step) is shared by every ``er_*`` baseline.
"""

from __future__ import annotations

from torch import Tensor

from clu.strategies.base import CLUStrategy
from clu.update import FastTerm


class ReplayLearner(CLUStrategy):
    """Learn: CE on the learn batch + CE on a buffer batch, summed into one step."""

    uses_buffer = True

    def learn_iteration(self, x: Tensor, y: Tensor) -> None:
        self.step([FastTerm(lambda: self.learn_loss(x, y))], lambda: self.ce(self.buffer_batch()), order="joint")


class ER(ReplayLearner):
    """Unlearn: the purge (done by the template) and nothing else."""

    name = "er"
