"""``er_ga``: replay; on a request, purge, then gradient ascent on the data to forget."""

from __future__ import annotations

import torch

from clu.events import UnlearnRequest
from clu.strategies.configs import ERGAConfig
from clu.strategies.er import ReplayLearner
from clu.update import FastTerm, weighted_ascent_loss


class ERGA(ReplayLearner):
    name = "er_ga"
    cfg: ERGAConfig

    def forget(self, request: UnlearnRequest) -> None:
        forget = self.cycle(torch.tensor(request.sample_ids))

        def ascent() -> torch.Tensor:
            x, y = self.batch(next(forget))
            return weighted_ascent_loss(self.logits(x, y), y, lam=0.0)

        self.unlearn_phase(self.cfg.unlearn_iters, self.cfg.unlearn_lr, lambda t: [FastTerm(ascent)], None, clip=self.cfg.clip)
