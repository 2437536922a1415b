"""``er_ga``: replay; on a request, purge, then gradient ascent on the data to forget."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from clu.events import UnlearnRequest
from clu.strategies.base import UnlearnConfig
from clu.strategies.er import ReplayLearner
from clu.strategies.registry import register_strategy
from clu.update import FastTerm, weighted_ascent_loss


@dataclass(frozen=True)
class ERGAConfig(UnlearnConfig):
    """Plain gradient ascent (no weights, no mask, no replay) on D_U for ``unlearn_iters`` steps."""


@register_strategy("er_ga", "replay; purge, then gradient ascent on the forget set")
class ERGA(ReplayLearner):
    config_class = ERGAConfig
    cfg: ERGAConfig

    def forget(self, request: UnlearnRequest, *, then_learn: bool) -> None:
        forget = self.cycle(torch.tensor(request.sample_ids))

        def ascent() -> torch.Tensor:
            x, y = self.batch(next(forget))
            return weighted_ascent_loss(self.logits(x, y), y, lam=0.0)

        self.unlearn_phase(self.cfg.unlearn_iters, self.cfg.unlearn_lr, lambda t: [FastTerm(ascent)], None, clip=self.cfg.clip)
