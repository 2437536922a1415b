"""``er``: experience replay with an id-keyed buffer; an unlearn request only purges the buffer.

:class:`ReplayLearner` is the learner of every replay strategy (``er``, every ``er_*``, ``ugclu``,
``retrain_stream``): each learn batch with a buffer batch, combined as the config's ``learner`` says
(``fast_slow``: a step on the learn batch, then a step on the buffer batch at the post-fast weights;
``joint``: one step on the summed losses), never clipped. A plain learn iteration is therefore the same in
every replay strategy, and a comparison table measures their unlearning steps (DESIGN §13).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from clu.strategies.base import CLUStrategy
from clu.strategies.configs import ReplayConfig
from clu.update import FastTerm


class ReplayLearner(CLUStrategy):
    """Learn: the fast term(s) on the learn batch and the buffer batch's CE, as ``cfg.learner`` combines them."""

    uses_buffer = True
    cfg: ReplayConfig

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(self.cfg, ReplayConfig):
            raise TypeError(f"{self.name}: a replay strategy needs a ReplayConfig (it sets the learner), "
                            f"got {type(self.cfg).__name__}")

    def learn_terms(self, x: Tensor, y: Tensor) -> list[FastTerm]:
        """The fast step's terms on a learn batch: its CE, through Avalanche's forward/backward callbacks."""
        return [FastTerm(lambda: self.learn_loss(x, y))]

    def preserve(self) -> Tensor | None:
        """The replay loss: CE on a buffer batch (None while the buffer is empty)."""
        return self.ce(self.buffer_batch())

    def learn_iteration(self, x: Tensor, y: Tensor) -> None:
        """The learn batch and a buffer batch, combined as ``cfg.learner`` says; no clipping (that is the
        unlearning step's)."""
        self.step(self.learn_terms(x, y), self.preserve, order=self.cfg.learner)


class ER(ReplayLearner):
    """Unlearn: the purge (done by the template) and nothing else."""

    name = "er"
