"""``er_rl``: replay; on a request, purge, then train on the forget set with random wrong labels + buffer CE."""

from __future__ import annotations

from typing import Iterator

import torch

from clu.events import UnlearnRequest
from clu.strategies.configs import ERRLConfig
from clu.strategies.er import ReplayLearner
from clu.update import FastTerm, cross_entropy, random_labels


class ERRL(ReplayLearner):
    name = "er_rl"
    cfg: ERRLConfig

    def relabel_loss(self, forget: Iterator[torch.Tensor]) -> torch.Tensor:
        """CE of a forget batch against random wrong labels from the retained classes."""
        x, y = self.batch(next(forget))
        return cross_entropy(self.logits(x, y), random_labels(y, sorted(self.known_classes), self.gen))

    def forget(self, request: UnlearnRequest) -> None:
        forget = self.cycle(torch.tensor(request.sample_ids))
        self.unlearn_phase(
            self.cfg.unlearn_iters,
            self.cfg.unlearn_lr,
            lambda t: [FastTerm(lambda: self.relabel_loss(forget))],
            self.preserve,
            clip=self.cfg.clip,
            order="joint",
        )
