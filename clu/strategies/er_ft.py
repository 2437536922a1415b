"""``er_ft``: replay; on a request, purge, then fine-tune on the buffer (catastrophic forgetting as unlearning)."""

from __future__ import annotations

from clu.events import UnlearnRequest
from clu.strategies.configs import ERFTConfig
from clu.strategies.er import ReplayLearner
from clu.update import FastTerm


class ERFT(ReplayLearner):
    name = "er_ft"
    cfg: ERFTConfig

    def forget(self, request: UnlearnRequest) -> None:
        if not len(self.buffer):
            return
        self.unlearn_phase(
            self.cfg.unlearn_iters,
            self.cfg.unlearn_lr,
            lambda t: [FastTerm(self.preserve)],
            None,
            clip=self.cfg.clip,
        )
